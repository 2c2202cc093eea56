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

The ensemble is an ordinary functional ``keras.Model``: ``predict``,
``evaluate`` (once compiled) and ``save``/``keras.models.load_model`` work as
for any model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from keras_trainkit.utils.validation import check_positive


@keras.saving.register_keras_serializable(package="keras_trainkit")
class ProbabilityAverage(keras.layers.Layer):
    """Average the class probabilities of several predictions.

    With ``from_logits=True`` each input holds logits and the output is
    ``log(1/K * sum_k softmax(z_k))``, computed as a log-sum-exp of the
    members' log-softmax. These are logits again (``softmax`` of them gives
    the averaged probabilities back), so the ensemble takes the same
    ``from_logits=True`` losses as its members. With ``from_logits=False``
    the inputs are probabilities and the output is their mean.
    """

    def __init__(self, from_logits: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.from_logits = bool(from_logits)

    def call(self, inputs):
        stacked = ops.stack(list(inputs), axis=0)
        if not self.from_logits:
            return ops.mean(stacked, axis=0)
        log_probabilities = ops.log_softmax(stacked, axis=-1)
        return ops.logsumexp(log_probabilities, axis=0) - math.log(len(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return super().get_config() | {"from_logits": self.from_logits}


def average_models(models: Sequence[keras.Model], *, from_logits: bool = True,
                   member_names: Sequence[str] | None = None,
                   name: str = "ensemble") -> keras.Model:
    """One model whose prediction is the average of ``models``' class probabilities.

    Args:
        models: trained single-input, single-output classifiers with the same
            input and output shapes.
        from_logits: whether the members emit logits (the output is then
            logits too, see :class:`ProbabilityAverage`) or probabilities.
        member_names: names of the members inside the ensemble (default
            ``member_0``, ``member_1``, ...); each member is wrapped under its
            name, so members that share a name can sit side by side.
        name: the ensemble model's name.

    The members keep their weights (shared, not copied).

    Example:
        >>> from keras_trainkit import models as zoo
        >>> ensemble = average_models([zoo.mlp((40,), 10), zoo.mlp((40,), 10)])
        >>> ensemble.output_shape
        (None, 10)
    """
    if isinstance(models, keras.Model) or not isinstance(models, Sequence):
        raise TypeError("Argument `models` must be a list of keras.Model. "
                        f"Received: models={models!r}")
    if not models:
        raise ValueError("Argument `models` must hold at least one model. Received: models=[]")
    for model in models:
        if not isinstance(model, keras.Model):
            raise TypeError("Argument `models` must hold keras.Model instances. "
                            f"Received an element: {model!r}")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError("Argument `models` must hold models with one input and one output. "
                             f"Received: {model.name} with {len(model.inputs)} inputs and "
                             f"{len(model.outputs)} outputs")
    shapes = {(tuple(m.input.shape[1:]), tuple(m.output.shape[1:])) for m in models}
    if len(shapes) != 1:
        raise ValueError("Argument `models` must hold models with the same input and output "
                         f"shapes. Received (input, output) shapes: {sorted(shapes)}")
    if member_names is None:
        member_names = [f"member_{i}" for i in range(len(models))]
    if isinstance(member_names, str) or len(member_names) != len(models) \
            or len(set(member_names)) != len(models):
        raise ValueError("Argument `member_names` must hold one distinct name per model. "
                         f"Received: member_names={member_names!r} for {len(models)} models")
    inputs = keras.Input(tuple(models[0].input.shape[1:]), name="inputs")
    outputs = [keras.Model(m.input, m.output, name=str(member))(inputs)
               for member, m in zip(member_names, models)]
    averaged = ProbabilityAverage(from_logits=from_logits, name="probability_average")(outputs)
    return keras.Model(inputs, averaged, name=name)


def ensemble_best_models(tuner, num_models: int = 5, *, from_logits: bool = True) -> keras.Model:
    """Average the ``num_models`` best trials of a finished KerasTuner search.

    The members are the oracle's best trials by the objective (validation data
    only), each loaded from its saved best checkpoint, as
    ``tuner.get_best_models`` loads them. Works with any KerasTuner tuner, ours
    or KerasTuner's own; a search with fewer scored trials gives a smaller
    ensemble. The members are named ``trial_<id>``, best first.

    Example:
        >>> ensemble = ensemble_best_models(tuner, 5)          # doctest: +SKIP
        >>> ensemble.predict(x_test).argmax(axis=1)            # doctest: +SKIP
    """
    check_positive("num_models", num_models, integer=True)
    trials = tuner.oracle.get_best_trials(num_models)
    if not trials:
        raise ValueError("The search has no scored trial to build an ensemble from. "
                         f"Received: num_models={num_models} and a tuner with "
                         f"{len(tuner.oracle.trials)} trials, none of them scored")
    return average_models([tuner.load_model(trial) for trial in trials], from_logits=from_logits,
                          member_names=[f"trial_{trial.trial_id}" for trial in trials])


__all__ = ["ProbabilityAverage", "average_models", "ensemble_best_models"]
