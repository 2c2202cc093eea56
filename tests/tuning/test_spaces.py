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
    shift = tuning.TrainingSpace(shift=(0, 6), defaults={"shift": 3}).sample(
        keras_tuner.HyperParameters())["shift"]
    assert shift == 3


def test_bad_defaults_name_the_value():
    with pytest.raises(ValueError, match=r"Received: default=0\.5"):
        tuning.OptimizerSpace(families=["adam"], ranges={"learning_rate": (1e-4, 1e-3)},
                              defaults={"learning_rate": 0.5}).sample(keras_tuner.HyperParameters())
    with pytest.raises(ValueError, match="Received: default='rmsprop'"):
        tuning.OptimizerSpace(families=["adam"], defaults={"optimizer": "rmsprop"}).sample(
            keras_tuner.HyperParameters())
    with pytest.raises(ValueError, match="shift"):
        tuning.TrainingSpace(shift=(3, 1))


def test_shift_is_off_unless_asked_for():
    values = tuning.TrainingSpace().sample(keras_tuner.HyperParameters())
    assert values["shift"] == 0
    hp = keras_tuner.HyperParameters()
    tuning.TrainingSpace(shift=(0, 4)).sample(hp)
    shift = hp._hps["shift"][0]
    assert (shift.min_value, shift.max_value, shift.default) == (0, 4, 0)
