"""write_report: log axes for log-sampled hyperparameters, epochs from 1, every trial's
curve, and Hyperband trials shown with the epochs they trained (issue 17, section 4)."""

import keras
import keras_tuner
import numpy as np
import pytest

from keras_trainkit.tuning.report import summary_table, trial_records, write_report

EPOCHS_RUN = (3, 1, 4, 2, 5, 3)  # per trial: six trials, one curve each


class ScriptedSearch(keras_tuner.RandomSearch):
    """Reports a made-up objective after every epoch, as our tuners do; no training."""

    def run_trial(self, trial, *args, **kwargs):
        index = len(self.oracle.trials) - 1
        for epoch in range(EPOCHS_RUN[index]):
            value = 0.5 + 0.05 * epoch + 0.01 * index
            self.oracle.update_trial(trial.trial_id, {"val_accuracy": value}, step=epoch)


def _space():
    hp = keras_tuner.HyperParameters()
    hp.Float("learning_rate", 1e-3, 3e-2, sampling="log")  # spans less than 100x
    hp.Int("units", 1, 1000)  # linear, spans 1000x
    hp.Fixed("epochs", 20)
    return hp


@pytest.fixture
def search(tmp_path):
    tuner = ScriptedSearch(hypermodel=None, hyperparameters=_space(), objective="val_accuracy",
                           max_trials=len(EPOCHS_RUN), seed=3, directory=str(tmp_path),
                           project_name="scripted")
    tuner.search()
    second = sorted(tuner.oracle.trials)[1]
    # As PruningOracleMixin records it: the 0-based epoch after which the rule stopped it.
    tuner.oracle.pruned_trials = {second: {"epoch": 0, "rule": "median", "reason": "below"}}
    return tuner


def test_report_counts_epochs_from_one_and_plots_every_trial(search, figures, tmp_path):
    records = {r.trial_id: r for r in trial_records(search)}
    for index, trial_id in enumerate(sorted(records)):
        record = records[trial_id]
        assert [epoch for epoch, _ in record.curve] == list(range(1, EPOCHS_RUN[index] + 1))
        assert record.epochs == EPOCHS_RUN[index]
    second = sorted(records)[1]
    assert records[second].pruned_after == 1 == records[second].epochs
    assert "PRUNED@1" in summary_table(search)

    write_report(search, str(tmp_path / "report"))
    curves = figures["learning_curves.png"].axes[0]
    assert len(curves.lines) == len(EPOCHS_RUN)
    assert min(min(line.get_xdata()) for line in curves.lines) == 1
    assert figures["score_vs_learning_rate.png"].axes[0].get_xscale() == "log"
    assert figures["score_vs_units.png"].axes[0].get_xscale() == "linear"


class TinyModel(keras_tuner.HyperModel):
    def build(self, hp):
        hp.Fixed("epochs", 20)  # what a recipe tunes; Hyperband overrides it
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Choice("units", [2, 3]))])
        model.compile(keras.optimizers.SGD(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], run_eagerly=True)  # no tracing: fast
        return model


@pytest.mark.slow
def test_hyperband_trials_show_the_epochs_they_trained(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32)
    tuner = keras_tuner.Hyperband(TinyModel(), objective="val_accuracy", max_epochs=3, factor=3,
                                  hyperband_iterations=1, seed=0, directory=str(tmp_path),
                                  project_name="hb")
    tuner.search(x, y, validation_data=(x, y), batch_size=16, verbose=0)
    records = trial_records(tuner)
    continued = 0
    for record in records:
        values = tuner.oracle.trials[record.trial_id].hyperparameters.values
        start, stop = values["tuner/initial_epoch"], values["tuner/epochs"]
        continued += start > 0
        assert record.epochs == stop - start
        assert record.hyperparameters["epochs"] == stop
        assert all(start < epoch <= stop for epoch, _ in record.curve)
    assert continued, "the search should continue some trials from earlier ones"
    assert "epochs=20" not in summary_table(tuner)


@pytest.mark.parametrize("num_trials, error, message", [
    (0, ValueError, "Argument `num_trials` must be > 0. Received: num_trials=0"),
    # a negative count sliced the table from the end: -1 silently left out the last trial
    (-1, ValueError, "Argument `num_trials` must be > 0. Received: num_trials=-1"),
    (2.5, TypeError, "Argument `num_trials` must be an integer, not float"),
])
def test_a_bad_num_trials_is_refused_before_anything_is_written(search, tmp_path, num_trials,
                                                                error, message):
    with pytest.raises(error, match=message.replace(".", r"\.")):
        summary_table(search, num_trials)
    with pytest.raises(error, match=message.replace(".", r"\.")):
        write_report(search, str(tmp_path / "report"), num_trials)
    assert not (tmp_path / "report").exists()


def test_kerastuners_own_tuner_is_not_reported_as_one_epoch_per_trial(tmp_path):
    """KerasTuner's RandomSearch reports each trial once, at its best epoch: every trial of
    3 epochs was listed as 1 epoch ("3 epochs trained in all" for 9). The report now says
    what it knows: at least through the reported epoch."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")

    def build(hp):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Choice("u", [2, 3, 4])),
                                  keras.layers.Dense(2)])
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=3, seed=1,
                                     directory=str(tmp_path), project_name="kt")
    tuner.search(x, y, epochs=3, validation_data=(x, y), verbose=0)
    records = trial_records(tuner)
    best_steps = {t.trial_id: [o.step for o in t.metrics.get_history("val_accuracy")]
                  for t in tuner.oracle.trials.values()}
    for record in records:
        assert not record.epochs_exact
        assert record.epochs == best_steps[record.trial_id][0] + 1 <= 3
    table = summary_table(tuner)
    assert f"at least {sum(r.epochs for r in records)} epochs trained in all" in table
    assert f"{records[0].epochs}+" in table.splitlines()[1]
