"""``fixed`` and ``ranges`` of the spaces' closed choices and booleans.

A closed choice lists every case the space's code handles: ``clipping`` is
``"none"`` or ``"global_norm"``, ``l2`` is ``"off"`` or ``"on"``, ``optimizer`` and
``schedule`` are the configured families, ``decay_type`` is what
``WarmupStableDecay`` takes. Before, another value was taken when the space was made
and then either ignored (``fixed={"clipping": "on"}`` searched without clipping, the
value recorded as if it applied) or failed in every trial's build (``KeyError:
'sgd_learning_rate'``). A boolean narrowed by ``ranges`` became KerasTuner's
``Choice([True])``, which KerasTuner standardizes to the integer 1 (``bool`` is an
``int`` subclass), so ``MLPSpace(ranges={"batch_norm": [True]})`` failed every build.
"""

import keras
import keras_tuner
import pytest

from keras_trainkit import tuning


@pytest.mark.parametrize("make, message", [
    (lambda: tuning.TrainingSpace(fixed={"clipping": "on"}),
     r"`fixed\['clipping'\]` must be one of 'none', 'global_norm'. Received: fixed\['clipping'\]='on'"),
    (lambda: tuning.TrainingSpace(ranges={"clipping": ["on", "none"]}),
     r"`ranges\['clipping'\]` must list values that are each one of 'none', 'global_norm'; "
     r"'on' is not"),
    (lambda: tuning.RegularizationSpace(fixed={"l2": "yes"}),
     r"`fixed\['l2'\]` must be one of 'off', 'on'"),
    (lambda: tuning.OptimizerSpace(families=["adamw", "adam"], fixed={"optimizer": "sgd"}),
     r"`fixed\['optimizer'\]` must be one of 'adamw', 'adam'. Received: fixed\['optimizer'\]='sgd'"),
    (lambda: tuning.OptimizerSpace(families=["adamw", "adam"], ranges={"optimizer": ["sgd"]}),
     r"`ranges\['optimizer'\]` must list values that are each one of 'adamw', 'adam'"),
    (lambda: tuning.ScheduleSpace(families=["cosine"], fixed={"schedule": "linear"}),
     r"`fixed\['schedule'\]` must be one of 'cosine'"),
    (lambda: tuning.ScheduleSpace(ranges={"warmup_stable_decay_decay_type": ["cos"]}),
     r"`ranges\['warmup_stable_decay_decay_type'\]` must list values that are each one of "
     r"'linear', 'cosine', '1-sqrt'; 'cos' is not"),
    (lambda: tuning.MLPSpace(fixed={"batch_norm": "yes"}),
     r"`fixed\['batch_norm'\]` must be True or False. Received: fixed\['batch_norm'\]='yes'"),
    (lambda: tuning.CNNSpace(ranges={"batch_norm": [1, 0]}),
     r"`ranges\['batch_norm'\]` must list values that are each True or False; 1, 0 is not"),
    (lambda: tuning.OptimizerSpace(families=["sgd"], fixed={"nesterov": "no"}),
     r"`fixed\['nesterov'\]` must be True or False"),
])
def test_a_value_outside_a_closed_choice_is_refused_when_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_clipping_fixed_on_was_searched_without_clipping():
    """The reproducer: ``fixed={"clipping": "on"}`` built ``clip_norm=None``."""
    with pytest.raises(ValueError, match="clipping"):
        tuning.TrainingSpace(fixed={"clipping": "on"}).build(keras_tuner.HyperParameters())
    values = tuning.TrainingSpace(fixed={"clipping": "global_norm"}).build(
        keras_tuner.HyperParameters())
    assert values["clip_norm"] == 1.0  # the clip_norm default, in its now active scope


def test_open_choices_and_closed_narrowing_still_work():
    hp = keras_tuner.HyperParameters()
    values = tuning.TrainingSpace(ranges={"batch_size": [48, 96], "clipping": ["global_norm"]},
                                  fixed={"label_smoothing": 0.05}).build(hp)
    assert values["batch_size"] == 48 and values["clip_norm"] is not None
    hp = keras_tuner.HyperParameters()
    optimizer = tuning.OptimizerSpace(families=["adamw", "sgd"],
                                      ranges={"optimizer": ["sgd"]}).build(hp)
    assert isinstance(optimizer, keras.optimizers.SGD)
    hp = keras_tuner.HyperParameters()
    tuning.MLPSpace(fixed={"width": 1000}, ranges={"activation": ["selu"]}).build(hp, (4,), 3)
    assert hp.values["width"] == 1000 and hp.values["activation"] == "selu"


@pytest.mark.parametrize("narrowed", [[True], [False], [True, False]])
def test_a_narrowed_boolean_stays_a_boolean(narrowed):
    """KerasTuner's own Boolean gives ``True``/``False``; a narrowed one gave 1/0."""
    hp = keras_tuner.HyperParameters()
    model = tuning.MLPSpace(depth=(1, 1), ranges={"batch_norm": narrowed}).build(hp, (4,), 3)
    assert type(hp.values["batch_norm"]) is bool and hp.values["batch_norm"] in narrowed
    has_norm = any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert has_norm is hp.values["batch_norm"]
    hp = keras_tuner.HyperParameters()
    optimizer = tuning.OptimizerSpace(families=["sgd"], ranges={"nesterov": narrowed}).build(hp)
    assert type(hp.values["sgd_nesterov"]) is bool and optimizer.nesterov is hp.values["sgd_nesterov"]
    # both values stay searchable, as a KerasTuner Boolean
    if len(narrowed) == 2:
        assert isinstance(hp._hps["sgd_nesterov"][0], keras_tuner.engine.hyperparameters.Boolean)
