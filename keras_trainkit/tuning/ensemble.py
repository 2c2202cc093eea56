"""Average the best models of a search into one Keras model.

A search trains dozens of models and keeps one, chosen by a validation score
that is itself noisy (400 examples at 99% accuracy tell the top trials apart by
one or two errors). Averaging the predicted class probabilities of the best
few trials keeps what they agree on and cancels much of the rest:

    p(y | x) = 1/K * sum_k softmax(f_k(x))

(Caruana et al. 2004, "Ensemble selection from libraries of models"; the
last step of auto-sklearn, Feurer et al. 2015). The members are the search's
own trained models, so the ensemble costs no training, only K forward passes
per prediction.

The ensemble is built by :func:`keras_trainkit.models.average_models`, an
ordinary functional ``keras.Model``: ``predict``, ``evaluate`` (once compiled)
and ``save`` work as for any model, and ``keras.models.load_model`` reads it
back once ``keras_trainkit`` is imported (KerasTuner is not needed then).
"""

from __future__ import annotations

import warnings

import keras

from keras_trainkit.models import average_models
from keras_trainkit.tuning.trial_models import check_search, load_trial_model
from keras_trainkit.utils.validation import check_positive


def ensemble_best_models(tuner, num_models: int = 5, *, from_logits: bool = True) -> keras.Model:
    """Average the ``num_models`` best trials of a finished KerasTuner search.

    The members are the oracle's best trials by the objective (validation data
    only), each loaded from its saved best checkpoint for inference (without
    its optimizer state, see :func:`~keras_trainkit.tuning.trial_models.load_trial_model`).
    Works with any KerasTuner tuner, ours or KerasTuner's own; a search with
    fewer scored trials gives a smaller ensemble. A trial whose weights (or the
    build config of a model ``build(hp)`` leaves unbuilt) cannot be read is left out with a warning naming the file, and the next best
    takes its place. The members are named ``trial_<id>``, best first.
    ``from_logits``: whether the members emit logits (our models and recipe
    spaces do); a search whose models end in a softmax needs ``False``, and
    ``True`` is refused for them (see :func:`~keras_trainkit.models.average_models`).

    Example:
        >>> ensemble = ensemble_best_models(tuner, 5)          # doctest: +SKIP
        >>> ensemble.predict(x_test).argmax(axis=1)            # doctest: +SKIP
    """
    check_search(tuner, models=True)
    check_positive("num_models", num_models, integer=True)
    scored = [t for t in tuner.oracle.get_best_trials(len(tuner.oracle.trials))
              if t.status == "COMPLETED" and t.score is not None]
    if not scored:
        raise ValueError("The search has no scored trial to build an ensemble from. "
                         f"Received: num_models={num_models} and a tuner with "
                         f"{len(tuner.oracle.trials)} trials, none of them scored")
    members, names = [], []
    for trial in scored:
        if len(members) == num_models:
            break
        try:
            members.append(load_trial_model(tuner, trial))
        except ValueError as error:
            warnings.warn(f"Left out of the ensemble: {error}", stacklevel=2)
            continue
        names.append(f"trial_{trial.trial_id}")
    if not members:
        raise ValueError(f"No trial's weights could be loaded (of {len(scored)} scored trials); "
                         "see the warnings above for the files.")
    return average_models(members, from_logits=from_logits, member_names=names)


__all__ = ["ensemble_best_models"]
