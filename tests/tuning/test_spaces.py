import inspect

import keras
import keras_tuner
import pytest

from keras_trainkit import tuning


def test_optimizer_space_conditional_scopes():
    hp = keras_tuner.HyperParameters()
    name, kwargs = tuning.OptimizerSpace(families=["sgd", "adamw"]).sample(hp)
    assert name == "sgd"  # first family is the default
    assert set(kwargs) == {"learning_rate", "momentum", "nesterov"}
    # the AdamW parameters exist in the space but are inactive while sgd is chosen
    names = {p.name for p in hp.space}
    assert "sgd_learning_rate" in names
    hp.values["optimizer"] = "adamw"
    name, kwargs = tuning.OptimizerSpace(families=["sgd", "adamw"]).sample(hp)
    assert name == "adamw" and set(kwargs) == {"learning_rate", "weight_decay", "beta_1", "beta_2"}
    assert not hp.is_active("sgd_momentum") and hp.is_active("adamw_weight_decay")


def test_learning_rate_default_and_log_scale():
    hp = keras_tuner.HyperParameters()
    tuning.OptimizerSpace(families=["adam"]).sample(hp)
    lr = hp._hps["adam_learning_rate"][0]
    assert lr.sampling == "log" and lr.default == pytest.approx(3e-4)


def test_fix_and_narrow():
    hp = keras_tuner.HyperParameters()
    space = tuning.OptimizerSpace(families=["adamw"], fixed={"beta_2": 0.999},
                                  ranges={"learning_rate": (1e-4, 1e-3)})
    optimizer = space.build(hp)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    lr = hp._hps["adamw_learning_rate"][0]
    assert (lr.min_value, lr.max_value) == (1e-4, 1e-3)
    assert isinstance(hp._hps["adamw_beta_2"][0], keras_tuner.engine.hyperparameters.Fixed)


def test_bad_space_arguments():
    with pytest.raises(ValueError, match="Received: families='nope'"):
        tuning.OptimizerSpace(families=["nope"])
    with pytest.raises(ValueError, match="Received: families=()"):
        tuning.ScheduleSpace(families=())
    with pytest.raises(ValueError, match="batch_sizes"):
        tuning.TrainingSpace(batch_sizes=[0])
    with pytest.raises(ValueError, match="architecture"):
        tuning.RecipeHyperModel((40,), 10, architecture="transformer")


@pytest.mark.parametrize("family", ["constant", "step", "cosine", "warmup_cosine", "one_cycle",
                                    "warmup_stable_decay"])
def test_schedule_families_build(family):
    hp = keras_tuner.HyperParameters()
    schedule = tuning.ScheduleSpace(families=[family]).build(hp, 0.1, 100)
    if family == "constant":
        assert schedule == 0.1
        return
    values = [float(schedule(step)) for step in range(100)]
    assert max(values) == pytest.approx(0.1, rel=1e-5)  # peaks at the sampled rate
    assert values[-1] < 0.1
    if family in ("warmup_cosine", "one_cycle", "warmup_stable_decay"):
        assert values[0] < 0.05  # starts low


def test_recipe_build_registers_every_hyperparameter():
    hp = keras_tuner.HyperParameters()
    hypermodel = tuning.RecipeHyperModel((40,), 10, architecture="cnn")
    model = hypermodel.build(hp)
    assert model.output_shape == (None, 10)
    names = {p.name for p in hp.space}
    for expected in ["optimizer", "schedule", "batch_size", "epochs", "clipping",
                     "label_smoothing", "dropout", "l2", "initializer", "blocks", "filters"]:
        assert expected in names, expected


def test_defaults_replace_a_parameters_default():
    hp = keras_tuner.HyperParameters()
    space = tuning.OptimizerSpace(families=["adamw", "sgd"], ranges={"learning_rate": (1e-3, 1e-2)},
                                  defaults={"learning_rate": 4e-3, "sgd_momentum": 0.5,
                                            "optimizer": "sgd"})
    name, kwargs = space.sample(hp)
    assert name == "sgd" and kwargs["momentum"] == 0.5 and kwargs["learning_rate"] == 4e-3
    lr = hp._hps["sgd_learning_rate"][0]
    assert (lr.min_value, lr.max_value, lr.default) == (1e-3, 1e-2, 4e-3)
    shift = tuning.TrainingSpace(shift=(0, 6), defaults={"shift": 3}).build(
        keras_tuner.HyperParameters())["shift"]
    assert shift == 3


def test_bad_defaults_name_the_value():
    with pytest.raises(ValueError, match=r"Received: defaults\['learning_rate'\]=0\.5"):
        tuning.OptimizerSpace(families=["adam"], ranges={"learning_rate": (1e-4, 1e-3)},
                              defaults={"learning_rate": 0.5}).sample(keras_tuner.HyperParameters())
    with pytest.raises(ValueError, match=r"Received: defaults\['optimizer'\]='rmsprop'"):
        tuning.OptimizerSpace(families=["adam"], defaults={"optimizer": "rmsprop"}).sample(
            keras_tuner.HyperParameters())
    with pytest.raises(ValueError, match="shift"):
        tuning.TrainingSpace(shift=(3, 1))


def test_shift_is_off_unless_asked_for():
    values = tuning.TrainingSpace().build(keras_tuner.HyperParameters())
    assert values["shift"] == 0
    hp = keras_tuner.HyperParameters()
    tuning.TrainingSpace(shift=(0, 4)).build(hp)
    shift = hp._hps["shift"][0]
    assert (shift.min_value, shift.max_value, shift.default) == (0, 4, 0)


def test_every_shipped_optimizer_is_a_family():
    """Families come from the optimizer registry: each one builds, with a learning
    rate range around its own default."""
    from keras_trainkit import optimizers

    shipped = {name.lower(): cls for name, cls in optimizers.REGISTRY.classes.items()
               if tuning.spaces.derived_family(cls) is not None}
    assert {"radam", "adabelief", "yogi", "adan", "novograd", "lars", "prodigy"} <= set(shipped)
    for family, cls in shipped.items():
        hp = keras_tuner.HyperParameters()
        optimizer = tuning.OptimizerSpace(families=[family]).build(hp)
        assert type(optimizer) is cls, family
        rate = hp._hps[f"{family}_learning_rate"][0]
        default = inspect.signature(cls.__init__).parameters["learning_rate"].default
        assert rate.min_value < default < rate.max_value and rate.sampling == "log"
    # wrappers of another optimizer are not families
    assert "lookahead" not in tuning.spaces.optimizer_families()


def test_a_later_registered_optimizer_appears(monkeypatch):
    from keras_trainkit import optimizers

    class Later(keras.optimizers.SGD):
        def __init__(self, learning_rate=0.05, momentum=0.5, **kwargs):
            super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)

    classes = dict(optimizers.REGISTRY.classes, Later=Later)
    monkeypatch.setattr(type(optimizers.REGISTRY), "classes", property(lambda self: classes))
    family = tuning.spaces.optimizer_families()["later"]
    assert family["learning_rate"].default == 0.05 and family["momentum"].default == 0.5


def test_extra_families_are_searched_and_named_in_errors():
    hp = keras_tuner.HyperParameters()
    space = tuning.OptimizerSpace(families=["adamw"], extra_families={
        "mine": (keras.optimizers.Adagrad,
                 {"learning_rate": tuning.Param("float", 1e-2, 1e-3, 1e-1, log=True)})})
    assert space.families == ("adamw", "mine")  # not silently ignored
    hp.values["optimizer"] = "mine"
    assert isinstance(space.build(hp), keras.optimizers.Adagrad)
    assert "mine" in hp._hps["optimizer"][0].values
    with pytest.raises(ValueError, match="extra_families"):
        tuning.OptimizerSpace(families=["adamw", "nope"])


def test_one_verb_for_every_space():
    hp = keras_tuner.HyperParameters()
    values = tuning.TrainingSpace().build(hp)
    assert set(values) == {"batch_size", "epochs", "clip_norm", "label_smoothing", "shift"}
    assert tuning.InitializerSpace().build(hp) in ("he_normal", "glorot_uniform", "orthogonal")
    assert set(tuning.RegularizationSpace().build(hp)) == {"dropout", "kernel_regularizer"}
    with pytest.warns(DeprecationWarning, match="use `.build"):
        assert tuning.TrainingSpace().sample(hp) == values


@pytest.mark.parametrize("make, message", [
    (lambda: tuning.MLPSpace(depth=(0, 2)), r"`depth` must be a \(low, high\) pair of integers "
                                            r"with 1 <= low <= high\. Received: depth=\(0, 2\)"),
    (lambda: tuning.MLPSpace(depth=(3, 2)), r"Received: depth=\(3, 2\)"),
    (lambda: tuning.MLPSpace(depth=3), r"Received: depth=3"),
    (lambda: tuning.MLPSpace(widths=(64, -1)), r"`widths` must list positive integers"),
    (lambda: tuning.MLPSpace(widths=()), r"Received: widths=\(\)"),
    (lambda: tuning.MLPSpace(activations=("relu", "nope")),
     r"`activations` must name activations Keras knows; 'nope' is not one"),
    (lambda: tuning.CNNSpace(blocks=(4, 2)), r"Received: blocks=\(4, 2\)"),
    (lambda: tuning.CNNSpace(filters=(16, 0)), r"`filters` must list positive integers"),
    (lambda: tuning.CNNSpace(kernel_sizes=(3.5,)), r"`kernel_sizes` must list positive integers"),
    (lambda: tuning.CNNSpace(dense_units=()), r"`dense_units` must list positive integers"),
    (lambda: tuning.CNNSpace(activations=("nope",)), r"'nope' is not one"),
    (lambda: tuning.RegularizationSpace(dropout=(0.6, 0.2)),
     r"`dropout` must be a \(low, high\) pair of numbers with 0\.0 <= low <= high < 1\.0"),
    (lambda: tuning.RegularizationSpace(dropout=(0.0, 1.0)), r"Received: dropout=\(0\.0, 1\.0\)"),
    (lambda: tuning.TrainingSpace(label_smoothing=(0.3, 0.1)),
     r"`label_smoothing` must be a \(low, high\) pair"),
    (lambda: tuning.InitializerSpace(choices=("he_normal", "nope")),
     r"`choices` must name initializers Keras knows; 'nope' is not one"),
    (lambda: tuning.RecipeHyperModel((-4,), 3), r"`input_shape` must be a shape"),
    (lambda: tuning.RecipeHyperModel(40, 3), r"Received: input_shape=40"),
])
def test_space_arguments_that_would_fail_every_trial_are_refused_when_made(make, message):
    """Before, each was taken and failed (or trained a model outside the range) only when a
    trial built its model."""
    with pytest.raises(ValueError, match=message):
        make()


def test_one_name_where_names_are_expected_is_a_type_error():
    with pytest.raises(TypeError, match="`activations` must be a sequence of activation names, "
                                        "not one string. Received: activations='relu'"):
        tuning.MLPSpace(activations="relu")
    with pytest.raises(TypeError, match="`choices` must be a sequence of initializer names"):
        tuning.InitializerSpace(choices="he_normal")


@pytest.mark.parametrize("space, name, expected", [
    (tuning.MLPSpace(depth=(3, 5)), "depth", 3),  # the usual default, 2, lies below the range
    (tuning.MLPSpace(depth=(1, 1)), "depth", 1),
    (tuning.MLPSpace(depth=(1, 4)), "depth", 2),  # inside: the usual default
    (tuning.CNNSpace(blocks=(4, 6)), "blocks", 4),  # the usual default, 3, lies below
    (tuning.CNNSpace(blocks=(1, 2)), "blocks", 2),
    (tuning.CNNSpace(blocks=(2, 4)), "blocks", 3),
])
def test_an_architecture_default_lies_in_the_users_range(space, name, expected):
    """The default is what a search's first trial (start_from_defaults) and a build at fresh
    HyperParameters take; KerasTuner keeps a default outside its range as it is, so
    depth=(3, 5) used to build a 2-layer MLP."""
    hp = keras_tuner.HyperParameters()
    shape = (40,) if isinstance(space, tuning.MLPSpace) else (40, 1)
    model = space.build(hp, shape, 3)
    assert hp.values[name] == expected
    hidden = [layer for layer in model.layers
              if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D))]
    kind = keras.layers.Dense if name == "depth" else keras.layers.Conv1D
    assert sum(isinstance(layer, kind) for layer in hidden) == expected + (name == "depth")


def test_shapes_of_every_kind_are_accepted():
    import numpy as np
    import tensorflow as tf

    for shape in [(40,), [28, 28, 1], tf.TensorShape([40, 1]), np.zeros((2, 40)).shape[1:],
                  (None, 8), ()]:
        assert tuning.RecipeHyperModel(shape, 3).input_shape == tuple(shape)


@pytest.mark.parametrize("arguments, error, message", [
    # each failed in every trial's build (KeyError, AttributeError, an unexpected argument)
    ({"optimizer": keras.optimizers.Adam()}, TypeError,
     r"Argument `optimizer` must be a tuning.OptimizerSpace \(or None for the default one\)"),
    ({"optimizer": "adam"}, TypeError, r"Received: optimizer='adam'"),
    ({"schedule": "cosine"}, TypeError, r"`schedule` must be a tuning.ScheduleSpace"),
    ({"training": tuning.RegularizationSpace()}, TypeError, r"`training` must be a tuning.TrainingSpace"),
    ({"regularization": tuning.TrainingSpace()}, TypeError,
     r"`regularization` must be a tuning.RegularizationSpace"),
    ({"initializer": "he_normal"}, TypeError, r"`initializer` must be a tuning.InitializerSpace"),
    ({"seed": "a"}, TypeError, r"Argument `seed` must be an integer, not str"),
    ({"seed": -1}, ValueError, r"Received: seed=-1"),
    # a string became a list of its characters
    ({"metrics": "accuracy"}, TypeError, r"`metrics` must be a list of metrics"),
    ({"tunable": "no"}, TypeError, r"`tunable` must be of type bool"),
])
def test_recipe_arguments_that_would_fail_every_trial_are_refused_when_made(arguments, error,
                                                                            message):
    with pytest.raises(error, match=message):
        tuning.RecipeHyperModel((8,), 3, **arguments)
