"""RecipeHyperModel beyond one-hot classification: integer labels with a loss of
one's own, regression, one-hot labels, and custom architectures."""

from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import tuning


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    return x, rng


def _quick(**kwargs):
    kwargs.setdefault("optimizer", tuning.OptimizerSpace(families=["adam"],
                                                         fixed={"learning_rate": 1e-2}))
    kwargs.setdefault("schedule", tuning.ScheduleSpace(families=["constant"]))
    return kwargs


def test_regression_with_a_loss_of_ones_own():
    x, rng = _data()
    y = (x @ rng.normal(size=(8, 1))).astype("float32")
    recipe = tuning.RecipeHyperModel(
        (8,), num_outputs=1, loss="mse", metrics=["mae"],
        training=tuning.TrainingSpace(batch_sizes=(32,), epochs=3, label_smoothing=None),
        **_quick())
    hp = keras_tuner.HyperParameters()
    model = recipe.build(hp)
    assert model.output_shape == (None, 1) and "label_smoothing" not in hp.values
    history = recipe.fit(hp, model, x, y, validation_data=(x, y))
    assert set(history.history) >= {"loss", "mae", "val_loss", "val_mae"}
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert recipe.objective == "val_loss"
    # the default training space drops label smoothing for a loss of one's own
    assert tuning.RecipeHyperModel((8,), num_outputs=1, loss="mse").training_space.label_smoothing is None


def test_integer_labels_with_a_sparse_loss_and_own_metrics():
    x, _ = _data()
    y = (x[:, 0] > 0).astype("int32")
    recipe = tuning.RecipeHyperModel(
        (8,), 2, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"], **_quick())
    hp = keras_tuner.HyperParameters()
    hp.Fixed("epochs", 2)
    model = recipe.build(hp)
    history = recipe.fit(hp, model, x, y, validation_data=(x, y))
    assert "val_sparse_categorical_accuracy" in history.history


def test_one_hot_labels_are_taken_as_they_are():
    x, _ = _data()
    labels = (x[:, 0] > 0).astype("int32")
    recipe = tuning.RecipeHyperModel((8,), 2, **_quick())
    hp = keras_tuner.HyperParameters()
    hp.Fixed("epochs", 1)
    a = recipe.fit(hp, recipe.build(hp), x, labels, validation_data=(x, labels))
    b = recipe.fit(hp, recipe.build(hp), x, keras.utils.to_categorical(labels, 2),
                   validation_data=(x, keras.utils.to_categorical(labels, 2)))
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)
    assert recipe.objective == "val_accuracy"


def build_function(hp, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(hp.Choice("units", [4, 8]), activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(hidden))


class BuildObject:
    """Not a tuning.Space: any object with build(hp, input_shape, num_classes)."""

    def build(self, hp, input_shape, num_classes, **layer_kwargs):
        self.layer_kwargs = layer_kwargs
        return build_function(hp, input_shape, num_classes)


def test_custom_architectures():
    hp = keras_tuner.HyperParameters()
    model = tuning.RecipeHyperModel((8,), 3, architecture=build_function).build(hp)
    assert model.output_shape == (None, 3) and "units" in hp.values
    # a function without layer kwargs: the initializer and regularization spaces are not searched
    assert "initializer" not in hp.values and "dropout" not in hp.values

    architecture = BuildObject()
    hp = keras_tuner.HyperParameters()
    tuning.RecipeHyperModel((8,), 3, architecture=architecture).build(hp)
    assert set(architecture.layer_kwargs) == {"kernel_initializer", "dropout",
                                              "kernel_regularizer"}
    assert "initializer" in hp.values


def test_recipe_argument_errors():
    with pytest.raises(TypeError, match="architecture"):
        tuning.RecipeHyperModel((8,), 3, architecture=42)
    with pytest.raises(ValueError, match="initializer and regularization spaces"):
        tuning.RecipeHyperModel((8,), 3, architecture=build_function,
                                initializer=tuning.InitializerSpace())
    with pytest.raises(ValueError, match="Label smoothing applies"):
        tuning.RecipeHyperModel((8,), num_outputs=1, loss="mse",
                                training=tuning.TrainingSpace())
    with pytest.raises(ValueError, match="num_outputs"):
        tuning.RecipeHyperModel((8,), num_outputs=1)
    with pytest.raises(ValueError, match="not both"):
        tuning.RecipeHyperModel((8,), 3, num_outputs=1, loss="mse")
    with pytest.raises(ValueError, match="num_classes"):
        tuning.RecipeHyperModel((8,))
    with pytest.raises(TypeError, match="must return a keras.Model"):
        tuning.RecipeHyperModel((8,), 3, architecture=lambda hp, s, n: None).build(
            keras_tuner.HyperParameters())


def test_tuners_take_the_recipes_objective(tmp_path):
    regression = tuning.RecipeHyperModel((8,), num_outputs=1, loss="mse")
    tuner = tuning.RandomSearch(regression, max_trials=1, directory=str(tmp_path))
    assert tuner.oracle.objective.name == "val_loss"
    classifier = tuning.RecipeHyperModel((8,), 3)
    tuner = tuning.RandomSearch(classifier, max_trials=1, directory=str(tmp_path),
                                project_name="other")
    assert tuner.oracle.objective.name == "val_accuracy"


def _docs_block(marker):
    text = (Path(__file__).resolve().parents[2] / "docs" / "tuning.md").read_text()
    blocks = text.split("```python\n")[1:]
    return next(block.split("```")[0] for block in blocks if marker in block)


def test_the_guides_architecture_and_hypermodel_examples_run():
    namespace = {"keras": keras, "keras_tuner": keras_tuner, "tuning": tuning}
    exec(_docs_block("def small_cnn"), namespace)
    for architecture in (namespace["small_cnn"], namespace["Residual"]()):
        model = tuning.RecipeHyperModel((40,), 10, architecture=architecture).build(
            keras_tuner.HyperParameters())
        assert model.output_shape == (None, 10)
    exec(_docs_block("class MyHyperModel").replace(
        'tuner = tuning.RandomSearch(MyHyperModel(), max_trials=20, pruner="asha", '
        'directory="runs")', ""), namespace)
    hypermodel, hp = namespace["MyHyperModel"](), keras_tuner.HyperParameters()
    x, rng = _data(64)
    x = np.concatenate([x] * 5, axis=1)  # 40 features
    history = hypermodel.fit(hp, hypermodel.build(hp), x, rng.integers(0, 10, 64), epochs=1,
                             verbose=0)
    assert len(history.history["loss"]) == 1
    assert {"batch_size", "epochs"} <= set(hp.values)
