"""Averaging the best models of a search: numbers against numpy, saving, a real tuner."""

import os
import re
import subprocess
import sys

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit import models as zoo
from keras_trainkit.models import ProbabilityAverage, average_models
from keras_trainkit import tuning
from keras_trainkit.tuning import ensemble_best_models, load_trial_model


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _members(count, activation=None):
    members = []
    for seed in range(count):
        keras.utils.set_random_seed(seed)
        model = zoo.mlp((12,), 5, depth=1, width=16)
        if activation:
            model = keras.Model(model.input, keras.layers.Activation(activation)(model.output))
        members.append(model)
    return members


def _x(n=32):
    return np.random.default_rng(0).normal(size=(n, 12)).astype("float32") * 3


def test_logits_average_is_log_of_mean_probability():
    members = _members(3)
    x = _x()
    logits = [np.asarray(m.predict(x, verbose=0), dtype="float64") for m in members]
    expected = np.log(np.mean([_softmax(z) for z in logits], axis=0))
    ensemble = average_models(members)
    got = ensemble.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the output is logits: softmax gives the averaged probabilities back
    np.testing.assert_allclose(_softmax(got.astype("float64")).sum(axis=1), 1.0, atol=1e-6)
    # ... and not the mean of the logits, which ranks classes differently here
    assert not np.allclose(got, np.mean(logits, axis=0), atol=1e-3)


def test_one_member_keeps_its_probabilities():
    member = _members(1)[0]
    x = _x()
    np.testing.assert_allclose(_softmax(average_models([member]).predict(x, verbose=0)),
                               _softmax(member.predict(x, verbose=0)), atol=1e-6)


def test_probability_members_are_averaged_as_probabilities():
    members = _members(2, activation="softmax")
    x = _x()
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    got = average_models(members, from_logits=False).predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_saved_ensemble_loads_with_every_member(tmp_path):
    members = _members(3)
    ensemble = average_models(members, name="three")
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    loaded = keras.models.load_model(path)
    x = _x()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ensemble.predict(x, verbose=0),
                               atol=1e-6)
    assert [layer.name for layer in loaded.layers if isinstance(layer, keras.Model)] == [
        "member_0", "member_1", "member_2"]
    assert isinstance(loaded.get_layer("probability_average"), ProbabilityAverage)


def test_saved_ensemble_loads_in_a_fresh_process_without_kerastuner(tmp_path):
    ensemble = average_models(_members(2))
    ensemble.save(tmp_path / "ensemble.keras")
    np.save(tmp_path / "x.npy", _x())
    script = (
        "import sys, keras, numpy as np, keras_trainkit\n"
        f"folder = {str(tmp_path)!r}\n"
        "model = keras.models.load_model(folder + '/ensemble.keras')\n"
        "np.save(folder + '/predicted.npy', model.predict(np.load(folder + '/x.npy'), verbose=0))\n"
        "print('keras_tuner' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"  # KerasTuner was not needed
    np.testing.assert_allclose(np.load(tmp_path / "predicted.npy"),
                               ensemble.predict(_x(), verbose=0), atol=1e-6)


def test_sequential_members_never_called_are_averaged():
    """A Sequential model with an Input that was built but never called (as a search's
    ``build(hp)`` makes it) has ``inputs``/``outputs`` but no ``input``/``output``:
    averaging it raised "The layer sequential has never been called"."""
    members = []
    for seed in range(2):
        keras.utils.set_random_seed(seed)
        members.append(keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, "relu"),
                                         keras.layers.Dense(5)]))
    x = _x()
    expected = np.log(np.mean([_softmax(np.asarray(m.predict(x, verbose=0), "float64"))
                               for m in members], axis=0))
    np.testing.assert_allclose(average_models(members).predict(x, verbose=0), expected, atol=1e-5)


def _softmax_ending(kind):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12,))
    if kind == "dense":
        return keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(inputs))
    logits = keras.layers.Dense(5)(inputs)
    layer = keras.layers.Softmax() if kind == "layer" else keras.layers.Activation("softmax")
    return keras.Model(inputs, layer(logits))


@pytest.mark.parametrize("kind", ["dense", "layer", "activation"])
def test_from_logits_with_softmax_members_is_refused(kind):
    """softmax(softmax(z)) is flatter than softmax(z): averaged, its argmax can differ from
    the members' mean probability, silently; the members' own probabilities are averaged
    with from_logits=False."""
    members = [_softmax_ending(kind), _members(1)[0]]
    with pytest.raises(ValueError, match="Argument `from_logits` must be False.*Received: from_logits=True"):
        average_models(members)
    softmax_member = members[0]
    x = _x()
    got = average_models([softmax_member], from_logits=False).predict(x, verbose=0)
    np.testing.assert_allclose(got, softmax_member.predict(x, verbose=0), atol=1e-6)


def test_bad_arguments_are_named():
    members = _members(2)
    with pytest.raises(ValueError, match="at least one model"):
        average_models([])
    with pytest.raises(TypeError, match="list of keras.Model"):
        average_models(members[0])
    with pytest.raises(TypeError, match="keras.Model instances"):
        average_models([members[0], "model"])
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match="same input and output shapes"):
        average_models([members[0], zoo.mlp((12,), 4, depth=1, width=16)])
    with pytest.raises(ValueError, match="member_names"):
        average_models(members, member_names=["a"])
    with pytest.raises(ValueError, match="member_names"):
        average_models(members, member_names=["a", "a"])


def _search(tmp_path, trials):
    """KerasTuner's own RandomSearch over a tiny MLP, one epoch per trial."""
    def build(hp):
        model = zoo.mlp((12,), 3, depth=1, width=hp.Choice("width", [4, 8, 16, 32]))
        model.compile(keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0.5).astype("int32")
    tuner = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=trials, seed=3,
                                     directory=str(tmp_path), project_name="search")
    tuner.search(x[:64], y[:64], validation_data=(x[64:], y[64:]), epochs=1, verbose=0)
    return tuner, x[64:]


def test_ensemble_of_a_kerastuner_search_averages_its_best_trials(tmp_path):
    tuner, x = _search(tmp_path, trials=4)
    ranked = sorted(tuner.oracle.trials.values(), key=lambda t: t.score)  # val_loss: lower first
    ensemble = ensemble_best_models(tuner, 3)
    names = [layer.name for layer in ensemble.layers if isinstance(layer, keras.Model)]
    assert names == [f"trial_{t.trial_id}" for t in ranked[:3]]
    expected = np.log(np.mean([_softmax(np.asarray(tuner.load_model(t).predict(x, verbose=0),
                                                   dtype="float64")) for t in ranked[:3]], axis=0))
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-5)
    # asking for more members than trials gives them all
    assert len(ensemble_best_models(tuner, 10).layers) == 4 + 2
    with pytest.raises(ValueError, match="num_models"):
        ensemble_best_models(tuner, 0)


def test_search_without_scored_trials_is_refused(tmp_path):
    tuner = keras_tuner.RandomSearch(lambda hp: zoo.mlp((12,), 3), objective="val_loss",
                                     max_trials=1, directory=str(tmp_path), project_name="empty")
    with pytest.raises(ValueError, match="no scored trial"):
        ensemble_best_models(tuner)


def test_load_trial_model_takes_a_trial_or_its_id(tmp_path):
    tuner, x = _search(tmp_path, trials=2)
    trial = tuner.oracle.get_best_trials(1)[0]
    expected = tuner.load_model(trial).predict(x, verbose=0)  # KerasTuner's own loading
    for given in (trial, trial.trial_id):
        np.testing.assert_allclose(load_trial_model(tuner, given).predict(x, verbose=0), expected,
                                   atol=1e-6)
    with pytest.raises(ValueError, match=r"must be a trial id of this search \(0, 1\)\. "
                                         r"Received: trial='7'"):
        load_trial_model(tuner, "7")
    with pytest.raises(TypeError, match=r"`trial` must be a keras_tuner Trial or a trial id"):
        load_trial_model(tuner, 0)


@pytest.mark.parametrize("call", [
    lambda: load_trial_model("search", "0"),
    lambda: ensemble_best_models("search"),
    lambda: tuning.summary_table("search"),
    lambda: tuning.write_report("search", "unused"),
])
def test_a_search_reader_given_no_tuner_says_so(call):
    """Before: AttributeError ("'str' object has no attribute 'oracle'")."""
    with pytest.raises(TypeError, match=r"Argument `tuner` must be a .*Received: tuner='search'"):
        call()


def _unbuilt_search(tmp_path):
    """KerasTuner's RandomSearch over a Sequential that ``build(hp)`` leaves unbuilt (no
    ``Input``): loading a trial's model needs the build config saved after its fit."""
    def build(hp):
        model = keras.Sequential([keras.layers.Dense(hp.Choice("width", [4, 8])),
                                  keras.layers.Dense(3)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    tuner = keras_tuner.RandomSearch(build, objective="val_loss", max_trials=2, seed=1,
                                     directory=str(tmp_path), project_name="unbuilt")
    tuner.search(x[:48], y[:48], validation_data=(x[48:], y[48:]), epochs=1, verbose=0)
    return tuner, x[48:]


@pytest.mark.parametrize("damage", ["missing", "not json"])
def test_a_trial_without_its_build_config_is_named_and_left_out(tmp_path, damage):
    """Before: a missing build config raised FileNotFoundError (and a damaged one a bare
    JSONDecodeError) from ``load_trial_model``, and stopped ``ensemble_best_models``
    instead of leaving that trial out as it does for damaged weights."""
    tuner, x = _unbuilt_search(tmp_path)
    best, other = tuner.oracle.get_best_trials(2)
    config = tmp_path / "unbuilt" / f"trial_{best.trial_id}" / "build_config.json"
    assert config.exists()
    if damage == "missing":
        config.unlink()
    else:
        config.write_text("{not json")
    with pytest.raises(ValueError, match=rf"Trial {best.trial_id}'s model build config "
                                         rf"{re.escape(str(config))} cannot be read"):
        load_trial_model(tuner, best)
    with pytest.warns(UserWarning, match=rf"Left out of the ensemble: Trial {best.trial_id}'s"):
        ensemble = ensemble_best_models(tuner, 2)
    members = [layer.name for layer in ensemble.layers if isinstance(layer, keras.Model)]
    assert members == [f"trial_{other.trial_id}"]
    logits = np.asarray(tuner.load_model(other).predict(x, verbose=0), dtype="float64")
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), np.log(_softmax(logits)), atol=1e-5)
