"""The names ``fixed``, ``ranges`` and ``defaults`` use, and the values they give, are
checked when a space is made (``Space.parameters`` / ``Space._check_names``).

Before, a name a space did not have (``fixed={"batchsize": 64}``) or one that its
configuration turned off (``clip_norm`` with ``clipping=False``) was ignored, so the
search tuned what the user meant to fix; a range that ``fixed`` overrode was ignored
the same way; and a bad range or default failed in every trial's build.
"""

import keras_tuner
import pytest

from keras_trainkit import tuning


def _make_all():
    return {
        "optimizer": lambda **kw: tuning.OptimizerSpace(families=["adamw", "sgd"], **kw),
        "schedule": lambda **kw: tuning.ScheduleSpace(families=["cosine", "step"], **kw),
        "training": lambda **kw: tuning.TrainingSpace(epochs=(2, 8), shift=(0, 4), **kw),
        "regularization": lambda **kw: tuning.RegularizationSpace(**kw),
        "initializer": lambda **kw: tuning.InitializerSpace(**kw),
        "mlp": lambda **kw: tuning.MLPSpace(**kw),
        "cnn": lambda **kw: tuning.CNNSpace(**kw),
    }


SPACES = _make_all()


@pytest.mark.parametrize("kind", sorted(SPACES))
@pytest.mark.parametrize("argument, value", [("fixed", 1), ("ranges", (1, 2)), ("defaults", 1)])
def test_a_name_the_space_does_not_have_is_refused(kind, argument, value):
    with pytest.raises(ValueError, match=rf"Argument `{argument}` names 'no_such_name', which "
                                         rf"\w+Space does not have"):
        SPACES[kind](**{argument: {"no_such_name": value}})


def test_the_message_shows_the_mapping_as_given():
    # TrainingSpace's epochs=20 goes into its fixed values; the message shows the user's own.
    with pytest.raises(ValueError, match=r"Received: fixed=\{'batchsize': 64\}$"):
        tuning.TrainingSpace(fixed={"batchsize": 64})
    with pytest.raises(ValueError, match=r"Received: ranges\['epochs'\]=\(1, 2\), fixed=\{\}$"):
        tuning.TrainingSpace(ranges={"epochs": (1, 2)})


@pytest.mark.parametrize("make, argument, name", [
    (lambda: tuning.TrainingSpace(clipping=False, fixed={"clip_norm": 1.0}), "fixed", "clip_norm"),
    (lambda: tuning.TrainingSpace(defaults={"shift": 3}), "defaults", "shift"),  # shift=None: off
    (lambda: tuning.TrainingSpace(label_smoothing=None, ranges={"label_smoothing": (0, 0.1)}),
     "ranges", "label_smoothing"),
    (lambda: tuning.RegularizationSpace(l2=False, defaults={"l2_factor": 1e-3}),
     "defaults", "l2_factor"),
    (lambda: tuning.MLPSpace(batch_norm=False, fixed={"batch_norm": True}), "fixed", "batch_norm"),
    (lambda: tuning.OptimizerSpace(families=["adamw"], defaults={"momentum": 0.5}),
     "defaults", "momentum"),  # no family searched has a momentum
    (lambda: tuning.OptimizerSpace(families=["adamw"], fixed={"sgd_momentum": 0.5}),
     "fixed", "sgd_momentum"),
    (lambda: tuning.ScheduleSpace(families=["cosine"], ranges={"step_gamma": (0.1, 0.2)}),
     "ranges", "step_gamma"),
])
def test_a_name_the_configuration_turns_off_is_refused(make, argument, name):
    with pytest.raises(ValueError, match=rf"Argument `{argument}` names '{name}'"):
        make()


@pytest.mark.parametrize("make, message", [
    # epochs=20 (the default) fixes the epochs, so a range on them would never apply
    (lambda: tuning.TrainingSpace(ranges={"epochs": (1, 2)}),
     r"Argument `ranges` gives 'epochs', which `fixed` \(or the space's own argument\) fixes"),
    (lambda: tuning.MLPSpace(fixed={"depth": 2}, defaults={"depth": 3}),
     r"Argument `defaults` gives 'depth'.*Received: defaults\['depth'\]=3, fixed=\{'depth': 2\}"),
    # the short name fixes every family's learning rate, the full name of one is then ignored
    (lambda: tuning.OptimizerSpace(families=["adamw", "sgd"], fixed={"learning_rate": 1e-3},
                                   ranges={"adamw_learning_rate": (1e-4, 1e-2)}),
     r"Argument `ranges` gives 'adamw_learning_rate'"),
    (lambda: tuning.OptimizerSpace(families=["sgd"], fixed={"sgd_momentum": 0.9},
                                   defaults={"momentum": 0.5}),
     r"Argument `defaults` gives 'momentum'"),
])
def test_a_range_or_default_that_fixed_overrides_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_general_range_applies_to_the_families_a_specific_fixed_leaves():
    space = tuning.OptimizerSpace(families=["adamw", "sgd"], fixed={"adamw_learning_rate": 1e-3},
                                  ranges={"learning_rate": (1e-3, 1e-2)})
    hp = keras_tuner.HyperParameters()
    hp.values["optimizer"] = "sgd"
    space.sample(hp)
    sgd_lr = hp._hps["sgd_learning_rate"][0]
    assert (sgd_lr.min_value, sgd_lr.max_value) == (1e-3, 1e-2)
    hp = keras_tuner.HyperParameters()
    hp.values["optimizer"] = "adamw"
    assert space.sample(hp)[1]["learning_rate"] == 1e-3
    assert isinstance(hp._hps["adamw_learning_rate"][0], keras_tuner.engine.hyperparameters.Fixed)


@pytest.mark.parametrize("make, error, message", [
    (lambda: tuning.OptimizerSpace(ranges={"learning_rate": (1e-2, 1e-4)}), ValueError,
     r"Argument `ranges\['learning_rate'\]` must satisfy low <= high"),
    (lambda: tuning.OptimizerSpace(ranges={"learning_rate": (0, 1e-2)}), ValueError,
     r"`ranges\['learning_rate'\]` must be positive: the parameter is sampled on a log scale"),
    (lambda: tuning.OptimizerSpace(ranges={"learning_rate": 1e-3}), ValueError,
     r"`ranges\['learning_rate'\]` must be a \(low, high\) pair of numbers"),
    # int() would have truncated 1.5 to 1 and searched a depth the user left out
    (lambda: tuning.MLPSpace(ranges={"depth": (1.5, 3)}), ValueError,
     r"`ranges\['depth'\]` must be a \(low, high\) pair of integers"),
    (lambda: tuning.CNNSpace(ranges={"kernel_size": []}), ValueError,
     r"`ranges\['kernel_size'\]` must list at least one value"),
    (lambda: tuning.MLPSpace(defaults={"depth": 2.5}), ValueError,
     r"`defaults\['depth'\]` must be an integer in \[1, 4\]"),
    (lambda: tuning.ScheduleSpace(defaults={"cosine_alpha": 0.5}), ValueError,
     r"`defaults\['cosine_alpha'\]` must be a number in \[0\.0, 0\.1\]. "
     r"Received: defaults\['cosine_alpha'\]=0\.5"),
    (lambda: tuning.CNNSpace(defaults={"batch_norm": "yes"}), TypeError,
     r"`defaults\['batch_norm'\]` must be of type bool"),
    (lambda: tuning.InitializerSpace(defaults={"initializer": "zeros"}), ValueError,
     r"`defaults\['initializer'\]` must be one of 'he_normal'"),
])
def test_a_bad_range_or_default_is_refused_when_made(make, error, message):
    """Before, each failed when a trial built the space (or, for 1.5, searched from 1)."""
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("make, error, message", [
    (lambda: tuning.TrainingSpace(fixed=[("epochs", 3)]), TypeError,
     r"`fixed` must be a mapping from hyperparameter names, or None"),
    (lambda: tuning.MLPSpace(prefix=3), TypeError, r"`prefix` must be of type str"),
    (lambda: tuning.OptimizerSpace(families="adamw"), TypeError,
     r"`families` must be a list of optimizer names. Received: families='adamw'"),
    (lambda: tuning.ScheduleSpace(families="cosine"), TypeError,
     r"`families` must be a list of schedule names"),
    (lambda: tuning.OptimizerSpace(families=["adamw", "sgd", "adamw"]), ValueError,
     r"`families` names \['adamw'\] more than once"),
    (lambda: tuning.OptimizerSpace(extra_families=3), TypeError, r"`extra_families`"),
    (lambda: tuning.OptimizerSpace(extra_families={"mine": {"learning_rate": (1e-3, 1e-1)}}),
     ValueError, r"`extra_families` must map 'mine' to \{parameter: Param\}"),
    (lambda: tuning.TrainingSpace(clipping="yes"), TypeError, r"`clipping` must be of type bool"),
    (lambda: tuning.RegularizationSpace(l2="no"), TypeError, r"`l2` must be of type bool"),
    (lambda: tuning.MLPSpace(batch_norm=1), TypeError, r"`batch_norm` must be of type bool"),
    # True was taken as 1 epoch / a batch of 1
    (lambda: tuning.TrainingSpace(epochs=True), ValueError, r"Received: epochs=True"),
    (lambda: tuning.TrainingSpace(epochs=(1.5, 3)), ValueError,
     r"`epochs` must be a \(low, high\) pair of integers"),
    (lambda: tuning.TrainingSpace(epochs="ab"), ValueError, r"Received: epochs='ab'"),
    (lambda: tuning.TrainingSpace(batch_sizes=(True,)), ValueError,
     r"`batch_sizes` must list positive integers"),
    (lambda: tuning.TrainingSpace(batch_sizes=64), ValueError, r"Received: batch_sizes=64"),
    (lambda: tuning.TrainingSpace(shift=(0.5, 2)), ValueError,
     r"`shift` must be a \(low, high\) pair of integers"),
])
def test_space_arguments_of_the_wrong_kind_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()


def _registered_names(space, hp):
    if isinstance(space, tuning.ScheduleSpace):
        space.build(hp, 0.1, 100)
    elif isinstance(space, (tuning.MLPSpace, tuning.CNNSpace)):
        space.build(hp, (40,) if isinstance(space, tuning.MLPSpace) else (40, 1), 3)
    else:
        space.build(hp)
    return {p.name for p in hp.space}


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_parameters_list_exactly_what_build_can_register(kind):
    """Every branch of every conditional choice is built; the union of the names registered
    is the table the checks use, so a name build registers is never refused and a name
    ``parameters`` lists is one a search can tune."""
    space = SPACES[kind]()
    table = space.parameters()
    branches = [{}]
    for parent in ("optimizer", "schedule", "clipping", "l2"):
        if parent in table:
            branches = [{parent: value} for value in table[parent].values]
    registered = set()
    for values in branches:
        hp = keras_tuner.HyperParameters()
        hp.values.update(values)
        registered |= _registered_names(space, hp)
    assert registered == set(table)
