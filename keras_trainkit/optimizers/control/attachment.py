"""Gradient transforms in front of a compiled model's optimizer, attached by callbacks.

``model.fit`` shows a callback no gradients. What it does do (Keras 3,
``keras/src/backend/tensorflow/trainer.py``): it creates ``train_function``
*before* ``callbacks.on_train_begin()``, but ``tf.function`` traces it lazily,
on the first batch, and ``train_step`` reads ``model.optimizer`` at trace time.
So a callback can, in ``on_train_begin``, :func:`attach_transforms`:

1. ``model.optimizer`` is replaced by a ``TransformedOptimizer`` whose chain
   holds the attached transforms (the original optimizer object, its
   variables and slots are reused as they are: nothing is copied),
2. that wrapper is built eagerly (transform state is created outside the
   traced function, which XLA needs), and
3. the train function is retraced, so the first batch traces the wrapper,
   with ``jit_compile`` True or False alike;

and in ``on_train_end`` :func:`detach_transforms` puts the original back.
Several callbacks share one wrapper per model (their transforms chained in
the order they attached; ``first=True`` puts an observer ahead of all). When
the compiled optimizer is itself a ``TransformedOptimizer``, its own
transforms join the one chain, after the observers and before the other
attached transforms, so its ``SkipNonFinite`` also guards what callbacks add.

The wrapper saves and loads exactly the original optimizer's variables, so a
``ModelCheckpoint``/``BackupAndRestore`` written mid-training loads into the
model as compiled. The state of an attachment lives on the installed wrapper
(no table outside it).
"""

from __future__ import annotations

import logging

import keras

from keras_trainkit.optimizers.control.chain_walk import _scope, retrace
from keras_trainkit.optimizers.transformed import TransformedOptimizer

logger = logging.getLogger(__name__)


class _AttachedTransforms(TransformedOptimizer):
    """The ``TransformedOptimizer`` installed by :func:`attach_transforms` for one ``fit``.

    It saves/loads only the compiled optimizer's variables, so checkpoints
    written while it is installed match the model as compiled, and counts the
    steps it applied (callbacks check that the loop really used it).
    """

    def __init__(self, original, entries, name):
        own = list(original.transforms) if isinstance(original, TransformedOptimizer) else []
        inner = original.inner_optimizer if isinstance(original, TransformedOptimizer) else original
        first = [t for owner, ts, is_first in entries if is_first for t in ts]
        later = [t for owner, ts, is_first in entries if not is_first for t in ts]
        scale = original.loss_scale_factor
        super().__init__(inner, first + own + later, loss_scale_factor=scale, name=name)
        self.original = original
        self.original_loss_scale_factor = scale
        self.entries = list(entries)

    def build(self, variables):
        if not self.original.built:
            self.original.build(variables)
        super().build(variables)
        self.applied_steps = self.add_variable((), initializer="zeros", dtype="int32",
                                               aggregation="only_first_replica", name="applied_steps")

    def wrapped_apply(self, grads, variables):
        self.applied_steps.assign_add(1)
        super().wrapped_apply(grads, variables)

    def save_own_variables(self, store):
        self.original.save_own_variables(store)

    def load_own_variables(self, store):
        self.original.load_own_variables(store)


def _install(model, original, entries):
    """Put a fresh wrapper of ``original`` with ``entries`` on ``model`` (or the original back)."""
    current = model.optimizer
    if isinstance(current, _AttachedTransforms):
        original.loss_scale_factor = current.original_loss_scale_factor
    if not entries:
        model.optimizer = original
        retrace(model)
        return original
    wrapper = _AttachedTransforms(original, entries, name=f"{original.name}_with_callbacks")
    with _scope(model):
        wrapper.build(list(model.trainable_variables))
    model.optimizer = wrapper
    retrace(model)
    return wrapper


def attach_transforms(model, owner, transforms, first=False):
    """Chain ``transforms`` (owned by ``owner``, e.g. a callback) in front of ``model.optimizer``.

    Transforms run in the order their owners attached; ``first=True`` puts
    them ahead of all others (an observer that must see raw gradients).
    Attaching again for the same owner replaces its transforms. Returns the
    installed wrapper. Call from ``on_train_begin``; detach in ``on_train_end``.

    Raises:
        ValueError: if the model has no Keras optimizer, or a
            ``LossScaleOptimizer`` (its gradients are scaled: use
            ``TransformedOptimizer`` in ``compile()`` instead).
    """
    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, _AttachedTransforms):
        original, entries = optimizer.original, optimizer.entries
    else:
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                f"{type(owner).__name__} needs a model compiled with a keras optimizer. "
                f"Received: model.optimizer={optimizer!r}"
            )
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                f"{type(owner).__name__} cannot wrap a LossScaleOptimizer (mixed_float16): its "
                "gradients are scaled. Use TransformedOptimizer in compile() instead. "
                f"Received: model.optimizer={optimizer!r}"
            )
        original, entries = optimizer, []
    entries = [e for e in entries if e[0] is not owner]
    entry = (owner, list(transforms), bool(first))
    entries = [entry] + entries if first else entries + [entry]
    return _install(model, original, entries)


def detach_transforms(model, owner) -> None:
    """Remove ``owner``'s transforms; restore the compiled optimizer when none remain."""
    optimizer = getattr(model, "optimizer", None)
    if not isinstance(optimizer, _AttachedTransforms):
        return
    entries = [e for e in optimizer.entries if e[0] is not owner]
    _install(model, optimizer.original, entries)


def applied_steps(model):
    """Steps the attached wrapper has applied, or ``None`` when none is attached."""
    optimizer = getattr(model, "optimizer", None)
    if not isinstance(optimizer, _AttachedTransforms):
        return None
    return int(keras.ops.convert_to_numpy(optimizer.applied_steps))


def warn_if_unused(model, owner) -> bool:
    """Log a warning (and return ``True``) when training ran steps without the attached wrapper.

    A loop that traced its step before ``on_train_begin`` (and reuses that
    trace) keeps calling the original optimizer: the callback then has no
    effect, and this says so instead of failing silently.
    """
    if applied_steps(model) == 0:
        logger.warning(
            "%s: the training step did not use the wrapped optimizer, so it has no effect. The "
            "loop traced its step before on_train_begin and reused it (a custom loop must read "
            "model.optimizer when tracing after on_train_begin, or retrace when it changes).",
            type(owner).__name__,
        )
        return True
    return False
