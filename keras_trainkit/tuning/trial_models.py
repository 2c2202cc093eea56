"""A finished trial's trained model, from any KerasTuner search, and the check that
the functions reading a search (:func:`load_trial_model`, the report, the ensemble)
were given one."""

from __future__ import annotations

import json

import keras
import keras_tuner
from keras_tuner.engine.trial import Trial
from keras_tuner.engine.tuner import maybe_distribute

from keras_trainkit._compat import keras_tuner as kt_compat


def check_search(tuner, *, models: bool = False) -> None:
    """Raise ``TypeError`` unless ``tuner`` is a KerasTuner search: a ``keras_tuner.Tuner``
    where its trials' models are loaded (``models=True``), else any tuner with a
    ``keras_tuner.Oracle`` (``keras_tuner.SklearnTuner`` too)."""
    ok = (isinstance(tuner, keras_tuner.Tuner) if models
          else isinstance(getattr(tuner, "oracle", None), keras_tuner.Oracle))
    if not ok:
        kind = "a keras_tuner.Tuner" if models else "a KerasTuner tuner (with an `oracle`)"
        raise TypeError(f"Argument `tuner` must be {kind}. Received: tuner={tuner!r}")


def _trial_of(tuner, trial):
    """``trial``, or the trial of ``tuner``'s oracle whose id it is."""
    if isinstance(trial, Trial):
        return trial
    if not isinstance(trial, str):
        raise TypeError("Argument `trial` must be a keras_tuner Trial or a trial id (str). "
                        f"Received: trial={trial!r}")
    trials = tuner.oracle.trials
    if trial not in trials:
        known = ", ".join(sorted(trials)[:10]) + (", ..." if len(trials) > 10 else "")
        raise ValueError(f"Argument `trial` must be a trial id of this search ({known or 'none'}). "
                         f"Received: trial={trial!r}")
    return trials[trial]


def _build_from_saved_config(model, path, trial) -> None:
    """Build ``model`` from the build config KerasTuner saved after the trial's ``fit``
    (``build_config.json``): a missing or damaged file is a ``ValueError`` naming it,
    as damaged weights are."""
    try:
        with open(path) as handle:
            model.build_from_config(json.load(handle))
    except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"Trial {trial.trial_id}'s model build config {path} cannot be read ({error}); "
            "KerasTuner writes it after the trial's fit. Run the search again to train the "
            "trial anew, or leave the trial out.") from error


def load_trial_model(tuner, trial) -> keras.Model:
    """A trial's model with its best epoch's weights, built and compiled as in the
    search, from any KerasTuner ``Tuner``. The optimizer's saved state is not
    loaded: inference needs none, and Keras would warn ("Skipping variable
    loading for optimizer ...") when the saved optimizer differs from the one
    the model is compiled with (a recipe recompiles with its schedule).

    Args:
        tuner: the search (a ``keras_tuner.Tuner``, ours or KerasTuner's own).
        trial: one of its trials (``tuner.oracle.get_best_trials()[0]``) or a trial id
            (``"03"``, as in the report).

    Raises:
        TypeError: when ``tuner`` is not a tuner or ``trial`` not a trial or id.
        ValueError: for an id the search does not have, and, naming the file, when
            the best-epoch weights, or the build config of a model that ``build(hp)``
            leaves unbuilt, cannot be read.
    """
    check_search(tuner, models=True)
    trial = _trial_of(tuner, trial)
    model = kt_compat.build_model(tuner, trial.hyperparameters)
    if not model.built:
        _build_from_saved_config(model, kt_compat.build_config_path(tuner, trial.trial_id), trial)
    path = kt_compat.best_weights_path(tuner, trial.trial_id)
    optimizer, model.optimizer = getattr(model, "optimizer", None), None
    try:
        with maybe_distribute(tuner.distribution_strategy):
            model.load_weights(path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"Trial {trial.trial_id}'s best-epoch weights {path} cannot be loaded ({error}). "
            "Run the search again to train the trial anew (our tuners re-run a trial whose "
            "weights are damaged), or leave the trial out.") from error
    finally:
        model.optimizer = optimizer
    return model


__all__ = ["check_search", "load_trial_model"]
