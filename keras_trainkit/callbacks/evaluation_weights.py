"""Evaluate at an optimizer's evaluation weights (Schedule-Free's average ``x``) in fit and the Trainer."""

from __future__ import annotations

import logging

import keras
from keras import ops

from keras_trainkit._compat.keras import nested_layers
from keras_trainkit.callbacks._monitor import TrainkitCallback
from keras_trainkit.callbacks._registry import register
from keras_trainkit.callbacks.swa import recompute_batch_norm_statistics
from keras_trainkit.optimizers.evaluation_weights import find_evaluation_weights
from keras_trainkit.utils.validation import check_bool, check_positive

logger = logging.getLogger(__name__)

_BN_STEPS = 50


def _batch_norm_variables(model):
    return [w for layer in nested_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
            for w in layer.non_trainable_variables]


def _snapshot(variables):
    return [ops.copy(ops.convert_to_tensor(w)) for w in variables]


def _restore(variables, values):
    for w, value in zip(variables, values):
        w.assign(value)


class EvaluationWeightsSwap:
    """Put a model's evaluation weights in for a while (a context manager), or for good.

    When ``model.optimizer`` keeps evaluation weights
    (:func:`~keras_trainkit.optimizers.find_evaluation_weights`: ``ScheduleFree``,
    Keras's ``ScheduleFreeAdamW``), :meth:`swap_in` copies the model's
    trainable weights, puts the evaluation weights in and, with ``bn_data``,
    recomputes every BatchNormalization layer's moving statistics at them
    (``recompute_batch_norm_statistics`` over at most ``bn_steps`` batches;
    the old statistics are copied first); :meth:`swap_out` puts both copies
    back exactly. Nothing happens when the optimizer keeps no evaluation
    weights or the model already holds them. :meth:`finalize` is the end of
    training: the evaluation weights stay (when the optimizer can resume from
    them, ``swaps_at_end_of_fit``) and the BatchNorm statistics are recomputed
    at them for good.

    Cost of a swap: one copy of the trainable weights (and of the BatchNorm
    statistics) on the device, and with ``bn_data`` up to ``bn_steps`` forward
    passes.

    Args:
        model: a compiled Keras model.
        bn_data: training data for the BatchNorm statistics (arrays, an
            ``(x, y)`` tuple or a ``tf.data.Dataset``), or ``None`` to keep
            the statistics (with a warning when the model has BatchNorm).
        bn_batch_size: batch size for array ``bn_data``.
        bn_steps: at most this many ``bn_data`` batches (the authors use 50).
    """

    def __init__(self, model, bn_data=None, bn_batch_size=32, bn_steps=_BN_STEPS):
        self.model = model
        self.bn_data = bn_data
        self.bn_batch_size = bn_batch_size
        self.bn_steps = bn_steps
        self.source = find_evaluation_weights(getattr(model, "optimizer", None))
        self._saved = None

    @property
    def recomputes_batch_norm(self) -> bool:
        """Whether a swap recomputes BatchNorm statistics (it needs ``bn_data`` for that): the
        optimizer keeps evaluation weights and the model has BatchNormalization layers."""
        return self.source is not None and bool(_batch_norm_variables(self.model))

    def _variables(self):
        return list(self.model.trainable_variables)

    def _recompute_batch_norm(self, statistics):
        if not statistics:
            return
        if self.bn_data is None:
            logger.warning("Evaluation weights: the model has BatchNormalization layers but no `bn_data`; "
                           "their statistics belong to the training weights, not the evaluation weights.")
            return
        recompute_batch_norm_statistics(self.model, self.bn_data, self.bn_batch_size, self.bn_steps)

    def swap_in(self) -> bool:
        """Put the evaluation weights in (with BatchNorm statistics); returns whether they were swapped."""
        if self.source is None or self._saved is not None or self.source.holds_evaluation_weights:
            return False
        variables = self._variables()
        weights = _snapshot(variables)
        if not self.source.swap_to_evaluation_weights(variables):
            return False
        statistics = _batch_norm_variables(self.model)
        self._saved = (weights, statistics, _snapshot(statistics))
        self._recompute_batch_norm(statistics)
        return True

    def swap_out(self) -> bool:
        """Put back what :meth:`swap_in` replaced; returns whether anything changed."""
        if self._saved is None:
            return False
        weights, statistics, values = self._saved
        self._saved = None
        _restore(statistics, values)
        return self.source.swap_to_training_weights(self._variables(), weights)

    def resume(self) -> bool:
        """Before training: put the training weights back if the model holds the evaluation weights.

        ``ScheduleFree`` leaves ``x`` in the model at the end of ``fit``; its
        next update would put ``y`` back itself, but only after that update's
        gradient was taken at ``x``. Called before the first step, this makes
        the next ``fit`` go on exactly from ``y``, and tells the optimizer
        (``expect_evaluation_swaps``, where it has one) that evaluation in this
        ``fit`` is at its evaluation weights. Returns whether anything changed.
        """
        if self.source is None:
            return False
        expect = getattr(self.source, "expect_evaluation_swaps", None)
        if callable(expect):
            expect()
        self.swap_out()
        return self.source.swap_to_training_weights(self._variables())

    def finalize(self) -> bool:
        """End of training: keep the evaluation weights in the model, BatchNorm statistics recomputed.

        Returns whether the model holds them afterwards. An optimizer that
        cannot resume from them (Keras's ``ScheduleFreeAdamW``) keeps its
        training weights.
        """
        if self.source is None or not self.source.swaps_at_end_of_fit:
            return False
        self.swap_out()
        self.source.swap_to_evaluation_weights(self._variables())
        if self.source.holds_evaluation_weights:
            self._recompute_batch_norm(_batch_norm_variables(self.model))
        return self.source.holds_evaluation_weights

    def __enter__(self):
        self.swap_in()
        return self

    def __exit__(self, *exc_info):
        self.swap_out()
        return False


@register
class SwapEvaluationWeights(TrainkitCallback):
    """Validate, evaluate and predict at the optimizer's evaluation weights (Schedule-Free's ``x``).

    For an optimizer that trains at ``y`` but should be evaluated at ``x``
    (``keras_trainkit.optimizers.ScheduleFree``, Keras's
    ``ScheduleFreeAdamW``; see ``find_evaluation_weights``), in the manner of
    Keras's ``SwapEMAWeights``:

    * ``on_test_begin``/``on_predict_begin`` put ``x`` into the model and,
      with ``bn_data``, recompute the BatchNorm statistics at ``x`` (over
      ``bn_steps`` batches, the authors' advice); ``on_test_end``/
      ``on_predict_end`` put the training weights and statistics back
      exactly. So ``fit``'s validation logs are those of ``x``, and training
      is the same with or without this callback.
    * ``on_train_begin`` puts ``y`` back when an earlier ``fit`` left ``x``
      in the model, so the first update's gradient is taken at ``y`` and
      training goes on exactly (without this callback, ``ScheduleFree``
      puts ``y`` back in its first update, after that update's gradient was
      taken at ``x``).
    * ``on_train_end``: ``ScheduleFree`` has put ``x`` into the model
      (``finalize_variable_values``); the BatchNorm statistics are recomputed
      at it. Keras's ``ScheduleFreeAdamW`` keeps ``y`` in the model (it could
      not resume from ``x``): evaluate or predict with this callback, or take
      ``find_evaluation_weights(optimizer).evaluation_weights()``.
    * ``swap_on_epoch=True`` also puts ``x`` in at each epoch end (before the
      callbacks listed after this one, e.g. a ``ModelCheckpoint``, or an
      ``EarlyStopping(restore_best_weights=True)``, which then restores the best
      epoch's ``x`` rather than its ``y``) and takes it out at the next epoch's
      start. ``ScheduleFree`` records the swap in its state, so a model saved
      then resumes correctly after ``load_model``; Keras's ``ScheduleFreeAdamW``
      does not (a warning says so).

    The same callback works in ``model.evaluate``/``predict`` and in the
    ``Trainer`` (which swaps by itself; the two do not swap twice).

    Args:
        bn_data: training inputs for the BatchNorm statistics (arrays, an
            ``(x, y)`` tuple or a ``tf.data.Dataset``); not part of the config.
            Without it a model with BatchNorm keeps its training statistics
            (a warning says so).
        bn_batch_size: batch size for array ``bn_data``.
        bn_steps: at most this many ``bn_data`` batches per recomputation.
        swap_on_epoch: also hold ``x`` between epochs (see above).

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import ScheduleFree
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(ScheduleFree(keras.optimizers.SGD(0.1)), "mse")
        >>> x, y = np.ones((8, 2)), np.ones(8)
        >>> _ = model.fit(x, y, epochs=2, validation_data=(x, y), verbose=0,
        ...               callbacks=[SwapEvaluationWeights(bn_data=x)])

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024 (the
    BatchNorm advice is in the authors' ``schedule_free`` README).
    """

    _reference_args = ("bn_data",)

    def __init__(self, bn_data=None, bn_batch_size=32, bn_steps=_BN_STEPS, swap_on_epoch=False):
        super().__init__()
        check_positive("bn_batch_size", bn_batch_size, integer=True)
        check_positive("bn_steps", bn_steps, integer=True)
        check_bool("swap_on_epoch", swap_on_epoch)
        self.bn_data = bn_data
        self.bn_batch_size = int(bn_batch_size)
        self.bn_steps = int(bn_steps)
        self.swap_on_epoch = swap_on_epoch
        self._swap = None
        self._warned = False

    def _current_swap(self):
        if self._swap is None or self._swap.model is not self.model:
            self._swap = EvaluationWeightsSwap(self.model, self.bn_data, self.bn_batch_size, self.bn_steps)
            if self._swap.source is None:
                optimizer = getattr(self.model, "optimizer", None)
                self._swap = None
                raise ValueError(
                    "SwapEvaluationWeights needs a model compiled with an optimizer that keeps evaluation "
                    "weights (keras_trainkit.optimizers.ScheduleFree, keras.optimizers.ScheduleFreeAdamW). "
                    f"Received: model.optimizer={optimizer!r}"
                )
        return self._swap

    def on_train_begin(self, logs=None):
        self._swap = None
        self._current_swap().resume()

    def on_test_begin(self, logs=None):
        self._current_swap().swap_in()

    def on_test_end(self, logs=None):
        self._current_swap().swap_out()

    on_predict_begin = on_test_begin
    on_predict_end = on_test_end

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._current_swap().swap_out()

    def on_epoch_end(self, epoch, logs=None):
        if not self.swap_on_epoch:
            return
        swap = self._current_swap()
        if swap.swap_in() and not swap.source.swaps_at_end_of_fit and not self._warned:
            self._warned = True
            logger.warning("SwapEvaluationWeights(swap_on_epoch=True) with %s: a model saved at an epoch end "
                           "holds x, and this optimizer cannot resume training from x after load_model.",
                           type(swap.source.optimizer).__name__)

    def on_train_end(self, logs=None):
        self._current_swap().finalize()

    def get_config(self):
        return {"bn_batch_size": self.bn_batch_size, "bn_steps": self.bn_steps,
                "swap_on_epoch": self.swap_on_epoch}
