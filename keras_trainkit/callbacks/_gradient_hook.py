"""Let callbacks act on the gradients of ``model.fit`` with any compiled optimizer.

``model.fit`` shows a callback no gradients. What it does do (Keras 3,
``keras/src/backend/tensorflow/trainer.py``): it creates ``train_function``
*before* ``callbacks.on_train_begin()``, but ``tf.function`` traces it lazily,
on the first batch, and ``train_step`` reads ``self.optimizer`` at trace time;
every batch calls ``self.train_function`` anew. So a callback can, in
``on_train_begin``:

1. wrap ``model.optimizer`` in a ``TransformedOptimizer`` whose transforms are
   the callbacks' (the original optimizer object, its variables and slots are
   reused as they are: nothing is copied),
2. build the wrapper eagerly (transform state is created outside the traced
   function, which XLA needs), and
3. call ``model.make_train_function(force=True)`` so the first batch traces
   the wrapper, with ``jit_compile`` True or False alike;

and in ``on_train_end`` put the original optimizer back and retrace again.
Several callbacks share one wrapper per model (their transforms chained in
the order they attached); the original comes back when the last one detaches.

The wrapper saves and loads exactly the original optimizer's variables, so a
``ModelCheckpoint``/``BackupAndRestore`` written mid-training loads into the
model as compiled. A custom loop (``keras_trainkit.training.Trainer``) sees the
wrapper when it reads ``model.optimizer`` while tracing after
``on_train_begin``.
"""

from __future__ import annotations

import contextlib
import logging
import weakref

import keras

from keras_trainkit.optimizers import TransformedOptimizer

logger = logging.getLogger(__name__)


class _CallbackOptimizer(TransformedOptimizer):
    """A ``TransformedOptimizer`` installed by callbacks for one ``fit``.

    It saves/loads only the wrapped optimizer's variables, so checkpoints
    written while it is installed match the model as compiled.
    """

    def build(self, variables):
        super().build(variables)
        # Counts applied steps, so callbacks can tell whether the loop used this wrapper.
        self.applied_steps = self.add_variable((), initializer="zeros", dtype="int32",
                                               aggregation="only_first_replica", name="applied_steps")

    def wrapped_apply(self, grads, variables):
        self.applied_steps.assign_add(1)
        super().wrapped_apply(grads, variables)

    def save_own_variables(self, store):
        self.inner_optimizer.save_own_variables(store)

    def load_own_variables(self, store):
        self.inner_optimizer.load_own_variables(store)


class _Attachment:
    def __init__(self, original):
        self.original = original
        self.loss_scale_factor = original.loss_scale_factor
        self.entries = []  # (owner, [transforms])


_STATE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _scope(model):
    strategy = getattr(model, "distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _retrace(model):
    if getattr(model, "train_function", None) is not None and hasattr(model, "make_train_function"):
        model.make_train_function(force=True)


def _install(model, state):
    state.original.loss_scale_factor = state.loss_scale_factor
    transforms = [t for _, ts in state.entries for t in ts]
    wrapper = _CallbackOptimizer(state.original, transforms, name=f"{state.original.name}_with_callbacks")
    with _scope(model):
        wrapper.build(list(model.trainable_variables))
    model.optimizer = wrapper
    _retrace(model)
    return wrapper


def attach(model, owner, transforms, first=False):
    """Chain ``transforms`` (owned by the callback ``owner``) in front of ``model.optimizer``.

    Transforms run in the order their owners attached; ``first=True`` puts
    them ahead of all others (an observer that must see raw gradients).
    Returns the installed wrapper. Call from ``on_train_begin``.
    """
    state = _STATE.get(model)
    if state is None:
        optimizer = getattr(model, "optimizer", None)
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
        state = _Attachment(optimizer)
        _STATE[model] = state
    state.entries = [e for e in state.entries if e[0] is not owner]
    if first:
        state.entries.insert(0, (owner, list(transforms)))
    else:
        state.entries.append((owner, list(transforms)))
    return _install(model, state)


def applied_steps(model):
    """Steps the installed wrapper has applied, or ``None`` when none is installed."""
    optimizer = getattr(model, "optimizer", None)
    if not isinstance(optimizer, _CallbackOptimizer):
        return None
    return int(keras.ops.convert_to_numpy(optimizer.applied_steps))


def warn_if_unused(model, owner):
    """Log a warning when training ran steps without going through the wrapper.

    A loop that traced its step before ``on_train_begin`` (and reuses that
    trace) keeps calling the original optimizer: the callback then has no
    effect, and this says so instead of failing silently.
    """
    steps = applied_steps(model)
    if steps == 0:
        logger.warning(
            "%s: the training step did not use the wrapped optimizer, so it has no effect. The "
            "loop traced its step before on_train_begin and reused it (a custom loop must read "
            "model.optimizer when tracing after on_train_begin, or retrace when it changes).",
            type(owner).__name__,
        )
        return True
    return False


def detach(model, owner):
    """Remove ``owner``'s transforms; restore the original optimizer when none remain."""
    state = _STATE.get(model)
    if state is None:
        return
    state.entries = [e for e in state.entries if e[0] is not owner]
    if state.entries:
        _install(model, state)
        return
    model.optimizer = state.original
    state.original.loss_scale_factor = state.loss_scale_factor
    del _STATE[model]
    _retrace(model)
