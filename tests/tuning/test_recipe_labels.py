"""Class labels and class counts the recipe's classification loss cannot use.

``keras.utils.to_categorical`` casts labels to ``int64`` and indexes with them, so
before, a label ``-1`` trained as the last class and ``0.7`` as class 0, with no
error; ``num_classes=1`` gave a softmax over one class, always 1, so every trial's
loss was 0 whatever it learned (a search that compares nothing).
"""

import keras_tuner
import numpy as np
import pytest

from keras_trainkit import tuning


def _softmax_cross_entropy(logits, one_hot):
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -(one_hot * log_p).sum(axis=-1)


def test_one_class_is_refused_for_classification():
    # numpy: with one class the loss is 0 for every logit, so nothing is learned
    logits = np.random.default_rng(0).normal(size=(5, 1)) * 10
    assert np.allclose(_softmax_cross_entropy(logits, np.ones((5, 1))), 0.0)
    with pytest.raises(ValueError, match=r"`num_classes` must be at least 2 for classification.*"
                                         r"Received: num_classes=1"):
        tuning.RecipeHyperModel((4,), 1)
    # a loss of one's own with one output stays possible
    assert tuning.RecipeHyperModel((4,), num_outputs=1, loss="mse").outputs == 1


def _fit(y, y_val=None):
    hypermodel = tuning.RecipeHyperModel(
        (4,), 3, training=tuning.TrainingSpace(batch_sizes=(16,), epochs=1, clipping=False))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    x = np.random.default_rng(0).normal(size=(len(y), 4)).astype("float32")
    validation = None if y_val is None else (x[:len(y_val)], y_val)
    return hypermodel.fit(hp, model, x, np.asarray(y), validation_data=validation)


@pytest.mark.parametrize("labels, shown", [
    ([0, 1, 2, -1] * 4, r"\[-1\]"),          # trained as class 2 before
    ([0, 1, 2, 0.7] * 4, r"\[0\.7\]"),          # trained as class 0 before
    ([0, 1, 2, 3] * 4, r"\[3\]"),            # an IndexError deep in Keras before
])
def test_labels_outside_the_classes_are_refused(labels, shown):
    with pytest.raises(ValueError, match=r"Argument `y` must hold class indices, integers in "
                                         r"\[0, 3\) \(num_classes=3\). Received: y with labels "
                                         r"such as " + shown):
        _fit(labels)


def test_bad_validation_labels_name_validation_data():
    with pytest.raises(ValueError, match=r"`validation_data` must hold class indices.*\[-1\]"):
        _fit([0, 1, 2, 1] * 4, y_val=np.array([0, -1]))


def test_good_labels_of_every_form_still_train():
    history = _fit(np.array([[0], [1], [2], [1]] * 4))  # (n, 1) indices
    assert np.isfinite(history.history["loss"][0])
    one_hot = np.eye(3)[[0, 1, 2, 1] * 4]
    assert np.isfinite(_fit(one_hot, y_val=one_hot[:4]).history["val_loss"][0])
    assert np.isfinite(_fit(np.array([0.0, 1.0, 2.0, 1.0] * 4)).history["loss"][0])


def test_the_recipe_models_evaluate_on_the_class_indices_the_search_took(tmp_path):
    """Before, the recipe compiled Keras's CategoricalCrossentropy: the best model's
    ``evaluate(x, y)`` raised "target and output must have the same rank" on the indices the
    search had trained on, and needed one-hot rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype("float32")
    y = rng.integers(0, 3, size=48)
    hypermodel = tuning.RecipeHyperModel(
        (4,), 3, training=tuning.TrainingSpace(batch_sizes=(16,), epochs=1, clipping=False))
    tuner = tuning.RandomSearch(hypermodel, max_trials=1, seed=0, directory=tmp_path, project_name="p")
    tuner.search(x[:32], y[:32], validation_data=(x[32:], y[32:]), verbose=0)
    best = tuner.get_best_models(1)[0]
    on_indices = best.evaluate(x[32:], y[32:], verbose=0, return_dict=True)
    # a model of its own: Keras picks the accuracy metric for the first labels it sees
    on_rows = tuner.get_best_models(1)[0].evaluate(x[32:], np.eye(3)[y[32:]], verbose=0, return_dict=True)
    assert on_indices == pytest.approx(on_rows, rel=1e-6)
    assert on_indices["accuracy"] == pytest.approx(tuner.oracle.get_best_trials(1)[0].score)
