"""The :class:`Trainer`: a compiled ``GradientTape`` loop with Keras callbacks and gradient hooks."""

from __future__ import annotations

import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit.optimizers.transforms import GradientChain
from keras_trainkit.training import _checkpoint, _data
from keras_trainkit.training.batch_size_schedule import BatchSizeSchedule
from keras_trainkit.utils.validation import (
    check_in,
    check_non_negative,
    check_positive,
    check_probability,
    check_type,
)

try:  # XLA's optimization barrier (TensorFlow exports no public alias of it)
    from tensorflow.compiler.tf2xla.python.xla import optimization_barrier as _xla_barrier
except ImportError:  # pragma: no cover - other TensorFlow builds
    _xla_barrier = None

logger = logging.getLogger(__name__)

ON_NAN_POLICIES = ("stop", "skip", "raise")
_FROM_MODEL = object()


def _find_sam(optimizer):
    """The SAM optimizer in ``optimizer``'s wrapper chain (its two-pass hook), or ``None``."""
    seen = optimizer
    while seen is not None:
        if callable(getattr(seen, "compute_gradients", None)) and hasattr(seen, "rho"):
            return seen
        inner = getattr(seen, "inner_optimizer", None)
        seen = inner if inner is not seen else None
    return None


class NonFiniteLossError(FloatingPointError):
    """Raised by ``Trainer.fit`` under ``on_nan="raise"`` when a loss is NaN or Inf."""


def _pythonify(logs) -> dict:
    out = {}
    for key, value in (logs or {}).items():
        if isinstance(value, dict):
            out.update(_pythonify(value))
            continue
        try:
            out[key] = float(np.asarray(value))
        except (TypeError, ValueError):
            out[key] = value
    return out


class _StepLimits:
    """The ``limit`` tensor of a call: ``min(k, remaining)``, made once per value."""

    def __init__(self, k: int):
        self.k = k
        self._tensors = {}

    def __call__(self, remaining):
        limit = self.k if remaining is None else min(self.k, remaining)
        if limit not in self._tensors:
            self._tensors[limit] = tf.constant(limit, tf.int32)
        return self._tensors[limit]


def _bound_call(function, iterator):
    """A callable ``call(limit)`` that runs ``function(iterator, limit)``, step after step.

    A ``tf.function`` call looks up its trace from the argument types, then
    binds and flattens the arguments: on CPU about a quarter of a small MLP's
    step. The calls of an epoch pass the same iterator and a scalar ``limit``,
    so the lookup and the flattening are done once here, and each call runs
    the traced graph on the flat inputs (the iterator's resource tensors, the
    limit, the graph's captured variables). Eager functions (``run_eagerly``)
    are called as they are.
    """
    if not isinstance(function, tf.types.experimental.PolymorphicFunction):
        return lambda limit: function(iterator, limit)
    concrete = function.get_concrete_function(iterator, tf.TensorSpec([], tf.int32))
    inputs = tf.nest.flatten(iterator, expand_composites=True)
    captured = concrete.captured_inputs
    return lambda limit: concrete._call_flat(inputs + [limit], captured)


class Trainer:
    """A ``GradientTape`` training loop for any Keras model, as fast as ``model.fit``.

    Each training step is::

        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = compute_loss(x, y, y_pred, sample_weight)   # + model.losses + penalties
        g = tape.gradient(optimizer.scale_loss(loss), model.trainable_variables)
        g = accumulate(g)            # mean over k micro-batches (k = gradient_accumulation_steps)
        g = transforms(g)            # clipping, noise, ... on the (averaged) gradient
        optimizer.apply(g)           # once every k micro-batches

    The step runs inside ``tf.function`` (``jit_compile=True`` adds XLA), and
    ``steps_per_execution`` steps run per call in an in-graph loop, with the
    callbacks' batch hooks called once per call (as ``fit`` does). Loss and
    metrics accumulate in the model's ``keras.metrics`` variables; no Python
    list of tensors grows during training (the classic "running_loss += loss"
    leak of eager loops cannot happen).

    The Trainer compiles the model with the given optimizer, loss and metrics,
    so ``model.optimizer``, ``model.metrics``, ``model.save`` and every Keras
    callback (``EarlyStopping``, ``ModelCheckpoint``, ``TensorBoard``,
    ``CSVLogger``, ``ReduceLROnPlateau``, ``LearningRateScheduler``,
    ``TerminateOnNaN``, ``BackupAndRestore``) see what they see under ``fit``.

    Non-finite losses follow ``on_nan``:

    * ``"stop"`` (default): that step's update and every later step of the
      epoch are skipped (in the graph, so no per-step read-back is needed), a
      warning is logged and training stops at the end of the epoch
      (``model.stop_training``);
    * ``"skip"``: the step's update and metric updates are skipped and training
      goes on; ``trainer.skipped_steps`` counts them;
    * ``"raise"``: as ``"stop"``, then :class:`NonFiniteLossError` is raised at
      the end of the epoch.

    Weights are never updated from a non-finite loss. (Non-finite *gradients*
    with a finite loss are the job of a skip-non-finite gradient transform, or of
    the loss-scale optimizer under ``mixed_float16``.)

    Custom objectives: subclass and override :meth:`compute_loss` (the loss from
    ``x, y, y_pred``, per replica, inside the tape); for more control override
    :meth:`compute_gradients`, :meth:`replica_step` or :meth:`train_step`.

    Args:
        model: any Keras model (Sequential, functional or subclassed).
        optimizer: a Keras optimizer instance or name.
        loss: a Keras loss (instance, name or callable ``loss(y_true, y_pred)``).
        metrics: metrics as for ``model.compile``.
        jit_compile: ``True`` for XLA, ``False`` for a plain ``tf.function``,
            ``"auto"`` as in ``fit``: XLA when a GPU/TPU is present, the model
            supports it and no distribution strategy is active.
        steps_per_execution: training steps per compiled call (>= 1).
        gradient_accumulation_steps: micro-batches per optimizer update (>= 1).
            The optimizer's ``iterations`` (and so its schedules) counts updates,
            not micro-batches. A partial accumulation carries over epochs.
        gradient_transforms: a transform or a list of transforms applied, in
            order, to the unscaled (and averaged, under accumulation) gradients
            before each update: ``keras_trainkit.optimizers.transforms``
            (``ClipByGlobalNorm``, ``AutoClip``, ``AdaptiveGradientClipping``,
            ``GradientNoise``, ``SkipNonFinite``, ...) or any callable
            ``t(grads, variables) -> grads``. A transform's ``gate`` (e.g.
            ``SkipNonFinite``) can veto an update.
        penalties: model-level penalties added to the loss inside the tape, each
            a callable ``penalty(model, x, y, training)`` returning a weighted
            scalar (``keras_trainkit.regularizers.JacobianPenalty``,
            ``InputGradientPenalty``). A ``keras_trainkit.optimizers.SAM``
            optimizer is detected and its two-pass ``compute_gradients`` hook used.
        on_nan: ``"stop"``, ``"skip"`` or ``"raise"`` (see above).
        strategy: a ``tf.distribute`` strategy; by default the current one.
            Build the model under ``strategy.scope()``.
        shuffle: reshuffle NumPy inputs every epoch.
        seed: seed of the NumPy-input shuffling.
        run_eagerly: run the step eagerly (for debugging).

    Example:
        >>> import numpy as np, keras
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> trainer = Trainer(model, keras.optimizers.SGD(0.1), "mse", jit_compile=False)
        >>> history = trainer.fit(np.ones((8, 4)), np.ones((8, 1)), batch_size=4, verbose=0)
        >>> sorted(history.history)
        ['loss']
    """

    def __init__(
        self,
        model,
        optimizer,
        loss,
        metrics=None,
        *,
        jit_compile="auto",
        steps_per_execution: int = 1,
        gradient_accumulation_steps: int = 1,
        gradient_transforms=None,
        penalties=None,
        on_nan: str = "stop",
        strategy=None,
        shuffle: bool = True,
        seed: int | None = None,
        run_eagerly: bool = False,
    ):
        check_type("model", model, keras.Model)
        check_in("jit_compile", jit_compile, ("auto", True, False))
        check_positive("steps_per_execution", steps_per_execution, integer=True)
        check_positive("gradient_accumulation_steps", gradient_accumulation_steps, integer=True)
        check_in("on_nan", on_nan, ON_NAN_POLICIES)
        check_type("shuffle", shuffle, bool)
        check_type("run_eagerly", run_eagerly, bool)
        if seed is not None:
            check_type("seed", seed, int)
        if strategy is not None:
            check_type("strategy", strategy, tf.distribute.Strategy)
        chain = GradientChain(gradient_transforms, allow_callables=True)
        self.model = model
        self.strategy = strategy or tf.distribute.get_strategy()
        self.steps_per_execution = int(steps_per_execution)
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self._chain = chain
        self.gradient_transforms = list(chain.transforms)
        if penalties is not None and not isinstance(penalties, (list, tuple)):
            penalties = [penalties]
        self.penalties = list(penalties or [])
        for penalty in self.penalties:
            if not callable(penalty):
                raise TypeError(
                    "Argument `penalties` must hold callables `penalty(model, x, y, training)` "
                    "such as keras_trainkit.regularizers.JacobianPenalty. "
                    f"Received: penalties={penalties!r}"
                )
        self.on_nan = on_nan
        self.shuffle = shuffle
        self.seed = seed
        self.run_eagerly = run_eagerly
        with self.strategy.scope():
            if optimizer is _FROM_MODEL:
                if not getattr(model, "compiled", False) or model.optimizer is None:
                    raise ValueError(
                        "`Trainer.from_compiled` needs a model compiled with an optimizer and "
                        f"a loss. Received: model={model.name!r} (not compiled)"
                    )
            else:
                model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=False)
        if getattr(self.model.optimizer, "gradient_accumulation_steps", None):
            raise ValueError(
                "Give gradient accumulation to the Trainer, not to the optimizer: the "
                "optimizer's own accumulation makes schedules count micro-batches. "
                f"Received: optimizer.gradient_accumulation_steps="
                f"{self.model.optimizer.gradient_accumulation_steps}"
            )
        self._sam = _find_sam(self.model.optimizer)
        self.jit_compile = self._resolve_jit(jit_compile)
        self._train_function = None
        self._traced_optimizer = None
        self._test_function = None
        self._predict_function = None
        self._state_built = False
        self.skipped_steps = 0

    @classmethod
    def from_compiled(cls, model, **kwargs) -> "Trainer":
        """A Trainer using the optimizer, loss and metrics of a compiled ``model``.

        Example:
            >>> import keras
            >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> trainer = Trainer.from_compiled(model, jit_compile=False)
        """
        return cls(model, _FROM_MODEL, _FROM_MODEL, **kwargs)

    # ------------------------------------------------------------------ hooks
    @property
    def optimizer(self):
        """The optimizer (``model.optimizer``; a loss-scale wrapper under ``mixed_float16``)."""
        return self.model.optimizer

    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        """The scalar objective of one batch; override for a custom objective.

        The default is the compiled loss plus the model's own losses
        (``model.losses``: regularizers, ``add_loss``), exactly as in ``fit``.
        """
        if hasattr(self.model, "_compute_loss"):
            return self.model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                            training=training)
        return self.model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)

    def compute_gradients(self, x, y, sample_weight=None):
        """Forward and backward pass: returns ``(loss, y_pred, gradients)``.

        The objective is :meth:`compute_loss` plus the ``penalties`` (each
        ``penalty(model, x, y, training=True)``, divided by the number of
        replicas like the loss), evaluated inside the tape so that input-gradient
        penalties are differentiated through. With a
        ``keras_trainkit.optimizers.SAM`` optimizer the gradients are SAM's, taken
        at the perturbed weights ``w + e(w)`` (``SAM.compute_gradients``); the
        returned loss is the one at ``w``. Gradients are those of
        ``optimizer.scale_loss(loss)``; the Trainer unscales them afterwards.
        """
        variables = self.model.trainable_variables
        first = {}

        def objective():
            y_pred = self.model(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            if self.penalties:
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                for penalty in self.penalties:
                    extra = penalty(self.model, x, y, training=True)
                    loss = loss + tf.cast(extra, loss.dtype) / replicas
            first.setdefault("loss", loss)
            first.setdefault("y_pred", y_pred)
            return self.optimizer.scale_loss(loss)

        if self._sam is not None:
            _, grads = self._sam.compute_gradients(objective, variables)
        else:
            with tf.GradientTape() as tape:
                scaled = objective()
            grads = tape.gradient(scaled, variables)
        return first["loss"], first["y_pred"], list(grads)

    def apply_gradients(self, grads, variables):
        """Run ``gradient_transforms`` on ``grads`` (unscaled, summed over replicas) and apply them.

        Runs in a cross-replica context, through the same
        :class:`~keras_trainkit.optimizers.transforms.GradientChain` runner as
        ``TransformedOptimizer``: where a skipping transform (``SkipNonFinite``)
        decides against the step, the later transforms' state, the weights,
        the optimizer slots and ``optimizer.iterations`` stay unchanged.
        """
        self._chain.apply(grads, variables, update=lambda g: self._optimizer_apply(g, variables))

    def replica_step(self, data):
        """Forward and backward pass of one replica; updates loss and metrics if finite.

        Runs in a replica context. Returns ``(finite, grads)``: whether the loss
        was finite on every replica, and this replica's unscaled gradients.
        """
        x, y, sample_weight = _data.unpack(data)
        loss, y_pred, grads = self.compute_gradients(x, y, sample_weight)
        scale = self._loss_scale()
        if scale is not None:
            grads = [None if g is None else g / tf.cast(scale, g.dtype) for g in grads]
        finite = self._all_replicas_finite(loss)
        batch = tf.shape(tf.nest.flatten(x)[0])[0]

        def update_metrics():
            self._update_metrics(loss, batch, x, y, y_pred, sample_weight)
            return tf.constant(True)

        tf.cond(finite, update_metrics, lambda: tf.constant(False))
        return finite, grads

    def train_step(self, data):
        """One micro-batch: replica passes, NaN policy, accumulation, transforms, update.

        Runs in a cross-replica context (the replicas' :meth:`replica_step` via
        ``strategy.run``, then one update from the summed gradients). Returns a
        boolean scalar: whether the loss was finite.

        Under XLA the gradients reach the update through an XLA optimization
        barrier (see :meth:`_pin_gradients`).
        """
        finite, grads = self._gradient_pass(data)
        if self.jit_compile and self.strategy.num_replicas_in_sync == 1:
            finite, grads = self._pin_gradients(finite, grads)
        return self._update_pass(finite, grads)

    @staticmethod
    def _pin_gradients(finite, grads):
        """Pass ``finite`` and ``grads`` through one XLA optimization barrier (XLA steps only).

        Without it TensorFlow's graph optimizer (Grappler's control-flow sinking,
        ``tfg-cf-sink``) moves ops used only inside the update's ``tf.cond``, such
        as the weight-gradient convolutions, into that conditional, where XLA:CPU
        compiles them as naive loops: the 1-D CNN's step ran 4-8x slower than
        ``fit``'s. The barrier's ``finite`` output feeds the ``tf.cond`` predicate,
        outside the branches, so the gradients stay in the main computation.
        """
        if _xla_barrier is None:
            return finite, grads
        present = [g for g in grads if g is not None]
        pinned = list(_xla_barrier(finite, *present))
        finite, rest = pinned[0], pinned[1:]
        return finite, [None if g is None else rest.pop(0) for g in grads]

    def _gradient_pass(self, data):
        """The replicas' :meth:`replica_step`: ``(finite, grads)``, grads summed over replicas."""
        strategy = self.strategy
        finite, grads = strategy.run(self.replica_step, args=(data,))
        finite = strategy.experimental_local_results(finite)[0]
        if strategy.num_replicas_in_sync > 1:
            # Keras scales each replica's loss by 1 / replicas: the sum is the mean gradient.
            grads = [None if g is None else strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None)
                     for g in grads]
        else:
            grads = [None if g is None else strategy.experimental_local_results(g)[0]
                     for g in grads]
        return finite, grads

    def _update_pass(self, finite, grads):
        """Accumulate or apply ``grads`` where ``finite``, else count a skipped step."""
        variables = self.model.trainable_variables

        def update():
            if self.gradient_accumulation_steps == 1:
                self.apply_gradients(grads, variables)
            else:
                self._accumulate(grads, variables)
            return tf.constant(True)

        def skip():
            self._skipped.assign_add(1)
            return tf.constant(False)

        return tf.cond(finite, update, skip)

    def _cross_replica_test_step(self, data):
        self.strategy.run(self.test_step, args=(data,))
        return tf.constant(True)

    def test_step(self, data):
        """One evaluation batch of one replica: forward pass, loss and metrics (no update)."""
        x, y, sample_weight = _data.unpack(data)
        y_pred = self.model(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        self._update_metrics(loss, batch, x, y, y_pred, sample_weight)
        return tf.constant(True)

    def predict_step(self, data):
        """One prediction batch: ``model(x, training=False)``."""
        x, _, _ = _data.unpack(data)
        return self.model(x, training=False)

    # -------------------------------------------------------------- internals
    def _resolve_jit(self, jit_compile):
        if self.run_eagerly:
            return False
        if jit_compile == "auto":
            # Like `fit`: XLA on an accelerator, not on CPU (where compiling takes
            # seconds that short runs never win back), never under a strategy.
            if self.strategy.num_replicas_in_sync > 1 or tf.distribute.has_strategy():
                return False
            if not any(d.device_type != "CPU" for d in tf.config.list_physical_devices()):
                return False
            from keras.src.trainers.trainer import model_supports_jit

            return bool(model_supports_jit(self.model))
        return bool(jit_compile)

    def _optimizer_apply(self, grads, variables):
        """``optimizer.apply`` from a cross-replica context, with the loss scale put back."""
        scale = self._loss_scale()
        if scale is not None:
            grads = [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]
        replicas = self.strategy.num_replicas_in_sync
        if replicas == 1:
            self.optimizer.apply(grads, variables)
            return
        # Keras optimizers all-reduce (sum) the gradients they get in a replica
        # context; hand each replica its share of the already summed gradient.
        shares = self.strategy.experimental_distribute_values_from_function(
            lambda context: [None if g is None else tf.identity(g) / replicas for g in grads])

        def apply(share):
            # A copy made in the replica context, on the replica's device.
            self.optimizer.apply([None if g is None else tf.identity(g) for g in share], variables)

        self.strategy.extended.call_for_each_replica(apply, args=(shares,))

    def _loss_scale(self):
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            return self.optimizer.dynamic_scale
        return None

    def _all_replicas_finite(self, loss):
        finite = tf.reduce_all(tf.math.is_finite(loss))
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            bad = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.cast(~finite, tf.float32))
            finite = tf.equal(bad, 0.0)
        return finite

    def _update_metrics(self, loss, batch, x, y, y_pred, sample_weight):
        tracker = getattr(self.model, "_loss_tracker", None)
        if tracker is not None:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            tracker.update_state(loss * replicas, sample_weight=batch)
        self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _accumulate(self, grads, variables):
        k = self.gradient_accumulation_steps
        for acc, g in zip(self._accumulators, grads):
            if g is not None:
                acc.assign_add(tf.cast(g, acc.dtype))
        self._micro_step.assign_add(1)

        def apply():
            averaged = [None if g is None else tf.cast(acc / k, g.dtype)
                        for acc, g in zip(self._accumulators, grads)]
            self.apply_gradients(averaged, variables)
            for acc in self._accumulators:
                acc.assign(tf.zeros_like(acc))
            return tf.constant(True)

        tf.cond(tf.equal(self._micro_step % k, 0), apply, lambda: tf.constant(False))

    def _build_state(self):
        """Create optimizer slots and the Trainer's own variables eagerly, once."""
        if self._state_built:
            return
        with self.strategy.scope():
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._chain.build(self.model.trainable_variables)
            self._skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self._micro_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="micro_step")
            self._halted = tf.Variable(False, trainable=False, name="halted")
            self._batches = tf.Variable(0, dtype=tf.int64, trainable=False, name="batches_seen")
            self._nan_batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="nan_batch")
            self._accumulators = []
            if self.gradient_accumulation_steps > 1:
                self._accumulators = [
                    tf.Variable(tf.zeros(v.shape, dtype=v.dtype), trainable=False,
                                name="grad_accumulator")
                    for v in self.model.trainable_variables
                ]
        self._state_built = True

    def _ensure_built(self, dataset):
        """Build the model, compiled loss and metrics on one batch, eagerly, once.

        Runs ``model(x, training=False)`` (no update, no dropout randomness) so
        that every variable exists before the step is traced.
        """
        if not self._state_built:
            batch = next(iter(dataset.take(1)))
            x, y, sample_weight = _data.unpack(batch)
            with self.strategy.scope():
                y_pred = self.model(x, training=False)
                if y is not None:
                    self.compute_loss(x, y, y_pred, sample_weight, training=False)
                    self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
                self.model.reset_metrics()
        self._build_state()

    def _make_multi_step(self, step_fn, halt_on_nonfinite: bool):
        strategy = self.strategy
        k = self.steps_per_execution
        jit = self.jit_compile and strategy.num_replicas_in_sync == 1
        halted, batches, nan_batch = self._halted, self._batches, self._nan_batch

        def counted_step(data):
            # Under on_nan "stop"/"raise" a non-finite loss sets `halted`: every later
            # step does nothing, so Python need not read a flag after each call. The
            # bookkeeping sits inside the (XLA-compiled) step, not in the loop body.
            ok = step_fn(data)
            if halt_on_nonfinite:
                batches.assign_add(1)

                def halt():
                    halted.assign(True)
                    nan_batch.assign(batches)
                    return tf.constant(True)

                tf.cond(ok, lambda: tf.constant(False), halt)
            return ok

        one_step = (tf.function(counted_step, jit_compile=True, reduce_retracing=True) if jit
                    else counted_step)

        def single_step(iterator, limit):
            # steps_per_execution=1: one conditional step, no in-graph loop to run
            # (the caller never asks for 0 steps, so `limit` is 1).
            optional = iterator.get_next_as_optional()
            go = optional.has_value()
            if halt_on_nonfinite:
                go = tf.logical_and(go, tf.logical_not(halted))
            n, ok = tf.cond(go, lambda: (tf.constant(1), one_step(optional.get_value())),
                            lambda: (tf.constant(0), tf.constant(True)))
            return n, ok, self.model.get_metrics_result()

        def multi_step(iterator, limit):
            # Up to `limit` (<= k) steps: an epoch's last call stops at its end,
            # also on an iterator that runs on into the next epoch.
            def cond(i, ok, optional):
                go = tf.logical_and(i < limit, optional.has_value())
                return tf.logical_and(go, tf.logical_not(halted)) if halt_on_nonfinite else go

            def body(i, ok, optional):
                ok = one_step(optional.get_value())
                nxt = tf.cond(i + 1 < limit, iterator.get_next_as_optional, lambda: optional)
                return i + 1, ok, nxt

            n, ok, _ = tf.while_loop(
                cond, body, [tf.constant(0), tf.constant(True), iterator.get_next_as_optional()]
            )
            return n, ok, self.model.get_metrics_result()

        step = single_step if k == 1 else multi_step
        if self.run_eagerly:
            return step
        return tf.function(step, reduce_retracing=True)

    def _distribute(self, dataset):
        if isinstance(dataset, tf.distribute.DistributedDataset):
            return dataset
        if self.strategy.num_replicas_in_sync > 1 or tf.distribute.has_strategy():
            return self.strategy.experimental_distribute_dataset(dataset)
        return dataset

    def _prepare(self, x, y, sample_weight, batch_size, *, shuffle, repeat=False, name="x"):
        """Check inputs and return ``(tf.data.Dataset, steps or None)``.

        Arrays become an :func:`_data.array_dataset` (epoch after epoch with
        ``repeat``; ``steps`` is then the length of one epoch); a dataset is
        used as it is.
        """
        if _data.is_dataset(x):
            if y is not None:
                raise ValueError(
                    f"Argument `y` must be None when `{name}` is a tf.data.Dataset (it yields "
                    f"the targets). Received: y of type {type(y).__name__}"
                )
            if batch_size is not None:
                raise ValueError(
                    "Argument `batch_size` must be None when `x` is a tf.data.Dataset "
                    f"(batch the dataset instead). Received: batch_size={batch_size}"
                )
            _data.check_dataset(x, self.model, name=name)
            cardinality = int(x.cardinality()) if isinstance(x, tf.data.Dataset) else -1
            return x, (cardinality if cardinality > 0 else None)
        if x is None:
            raise ValueError(f"Argument `{name}` must hold data. Received: {name}=None")
        batch_size = 32 if batch_size is None else batch_size
        check_positive("batch_size", batch_size, integer=True)
        _data.check_arrays(x, y, sample_weight, self.model, name=name)
        n = len(tf.nest.flatten(x)[0])
        dataset = _data.array_dataset(x, y, sample_weight, batch_size=batch_size,
                                      shuffle=shuffle, seed=self.seed, repeat=repeat)
        return dataset, math.ceil(n / int(batch_size))

    def _callback_list(self, callbacks, verbose, epochs, steps, history):
        if isinstance(callbacks, keras.callbacks.CallbackList):
            return callbacks
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError(
                "Argument `callbacks` must be a list of keras.callbacks.Callback. "
                f"Received: callbacks={callbacks!r}"
            )
        for callback in callbacks or []:
            if not isinstance(callback, keras.callbacks.Callback):
                raise TypeError(
                    "Argument `callbacks` must hold keras.callbacks.Callback instances. "
                    f"Received: callbacks={callbacks!r}"
                )
        return keras.callbacks.CallbackList(
            list(callbacks or []), add_history=history, add_progbar=verbose != 0,
            verbose=verbose, epochs=epochs, steps=steps, model=self.model,
        )

    def _check_verbose(self, verbose):
        check_in("verbose", verbose, ("auto", 0, 1, 2))
        return 1 if verbose == "auto" else verbose

    # ------------------------------------------------------------ public loop
    def fit(self, x, y=None, batch_size=None, epochs=1, validation_data=None,
            validation_split=0.0, callbacks=None, initial_epoch=0, verbose="auto",
            sample_weight=None, checkpoint_dir=None, checkpoint_every_n_steps=None):
        """Train for ``epochs`` epochs; returns a ``keras.callbacks.History``.

        Args:
            x: NumPy array(s) or a ``tf.data.Dataset`` yielding ``(x, y)`` or
                ``(x, y, sample_weight)`` batches.
            y: targets for array ``x`` (``None`` for a dataset).
            batch_size: batch size for arrays (default 32), or a
                :class:`~keras_trainkit.training.BatchSizeSchedule` applied between
                epochs (arrays only); ``None`` for a dataset.
            epochs: index of the last epoch, as in ``fit``.
            validation_data: ``(x_val, y_val)`` arrays or a dataset, evaluated
                after each epoch (``val_`` logs).
            validation_split: fraction of array inputs held out (the last examples).
            callbacks: Keras callbacks, run unchanged.
            initial_epoch: epoch to start from.
            verbose: ``"auto"``/1 progress bar, 2 one line per epoch, 0 silent.
            sample_weight: per-example weights for array inputs.
            checkpoint_dir: a folder for crash-safe resume. The Trainer writes
                atomic checkpoints there (model variables and random-seed
                states, optimizer and transform variables, its accumulators,
                the epoch and step position and the data order's state) at each
                epoch end and every ``checkpoint_every_n_steps`` steps; when the
                folder holds a complete checkpoint, ``fit`` restores it and
                continues from its position (the same script rerun after a
                crash resumes). For arrays, each epoch's example order comes
                from ``seed`` and the epoch number; a ``tf.data.Dataset`` must
                have a reproducible order (seeded shuffles, no
                ``deterministic=False``, state TensorFlow can save), and its
                random state is saved (see ``docs/custom_loop.md``).
            checkpoint_every_n_steps: steps between checkpoints inside an
                epoch (a positive integer), or ``None`` for epoch ends only.
        """
        check_non_negative("epochs", epochs, integer=True)
        check_type("initial_epoch", initial_epoch, int)
        check_probability("validation_split", validation_split)
        verbose = self._check_verbose(verbose)
        schedule = batch_size if isinstance(batch_size, BatchSizeSchedule) else None
        if schedule is not None:
            if _data.is_dataset(x):
                raise ValueError(
                    "A BatchSizeSchedule re-batches NumPy inputs; a tf.data.Dataset is batched "
                    "by its owner (re-batch it per epoch there, or pass arrays). "
                    f"Received: batch_size={schedule!r} with x of type {type(x).__name__}"
                )
            batch_size = schedule(max(int(initial_epoch), 0))
        if checkpoint_dir is not None:
            check_type("checkpoint_dir", checkpoint_dir, (str, os.PathLike))
            checkpoint_dir = os.fspath(checkpoint_dir)
            if _data.is_dataset(x):
                _data.check_resumable(x)
        if checkpoint_every_n_steps is not None:
            check_positive("checkpoint_every_n_steps", checkpoint_every_n_steps, integer=True)
            if checkpoint_dir is None:
                raise ValueError(
                    "Argument `checkpoint_every_n_steps` needs a `checkpoint_dir`. "
                    f"Received: checkpoint_every_n_steps={checkpoint_every_n_steps}"
                )
        if validation_split and validation_data is None:
            if _data.is_dataset(x):
                raise ValueError(
                    "Argument `validation_split` only works with array inputs; pass "
                    f"`validation_data` with a dataset. Received: validation_split={validation_split}"
                )
            _data.check_arrays(x, y, sample_weight, self.model)
            (x, y, sample_weight), validation_data = _data.split_validation(
                x, y, sample_weight, validation_split)
        # Arrays: one iterator over epoch after epoch for the whole fit (unless the
        # epochs' data are rebuilt for checkpoints); a dataset: an iterator per epoch.
        repeating = not _data.is_dataset(x) and checkpoint_dir is None
        dataset, steps = self._prepare(x, y, sample_weight, batch_size, shuffle=self.shuffle,
                                       repeat=repeating)
        val_dataset, val_steps = None, 0
        if validation_data is not None:
            if _data.is_dataset(validation_data):
                val_dataset, val_steps = self._prepare(validation_data, None, None, None, shuffle=False,
                                               name="validation_data")
            else:
                vx, vy, vw = _data.unpack(tuple(validation_data))
                val_dataset, val_steps = self._prepare(vx, vy, vw, batch_size, shuffle=False,
                                               name="validation_data")
        self._ensure_built(dataset)
        distributed = self._distribute(dataset)
        callbacks = self._callback_list(callbacks, verbose, epochs, steps, history=True)
        self.model.stop_training = False
        self.model._initial_epoch = None
        resume_step, save = 0, None
        if checkpoint_dir is not None:
            cursor = _checkpoint.DatasetCursor(dataset) if _data.is_dataset(x) else None
            seed, initial_epoch, resume_step = self._restore_checkpoint(checkpoint_dir, initial_epoch,
                                                                        cursor)
            save = self._checkpoint_saver(checkpoint_dir, seed, cursor)
        skipped_before = int(self._skipped.numpy())
        self._halted.assign(False)
        self._batches.assign(0)
        callbacks.on_train_begin()
        self._ensure_train_function()
        initial_epoch = getattr(self.model, "_initial_epoch", None) or initial_epoch
        training_logs = None
        iterator = None
        for epoch in range(initial_epoch, epochs):
            first_step = resume_step if epoch == initial_epoch else 0
            rebatch = schedule is not None and schedule(epoch) != batch_size
            if rebatch:
                batch_size = schedule(epoch)
                logger.info("Batch size schedule: batch size %d.", batch_size)
            if rebatch and save is None:  # with a checkpoint, the epoch's data is built below
                distributed, steps = self._rebatch(x, y, sample_weight, batch_size)
                callbacks.set_params({**callbacks.params, "steps": steps})
                iterator = None
            if save is not None and save.cursor is not None:
                save.cursor.mark()  # the random state this epoch's iterator starts from
                distributed = self._distribute(dataset.skip(first_step) if first_step else dataset)
            elif save is not None:
                n = len(tf.nest.flatten(x)[0])
                order = (np.random.default_rng([save.seed, epoch]).permutation(n) if self.shuffle
                         else np.arange(n))
                epoch_data = _data.ordered_dataset(x, y, sample_weight, order=order,
                                                   batch_size=batch_size)
                distributed = self._distribute(epoch_data.skip(first_step))
                steps = math.ceil(n / int(batch_size))
                callbacks.set_params({**callbacks.params, "steps": steps})
            if iterator is None or not repeating:
                iterator = iter(distributed)
            self.model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            logs = self._run_epoch(iterator, steps, callbacks, epoch, first_step=first_step,
                                   save=save, every=checkpoint_every_n_steps)
            # A transform that stopped training in the graph (SkipNonFinite under XLA,
            # where compiled code cannot raise) raises here at the latest.
            self._chain.raise_if_stopped()
            epoch_logs = dict(logs)
            if val_dataset is not None and not self.model.stop_training:
                val_logs = self.evaluate(val_dataset, callbacks=callbacks, return_dict=True,
                                         verbose=0, _internal=val_steps or 0)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            callbacks.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if save is not None:
                save(epoch + 1, 0)
            if self.model.stop_training:
                break
        self.skipped_steps = int(self._skipped.numpy())
        if self.skipped_steps > skipped_before:
            logger.warning("Skipped %d step(s) with a non-finite loss (on_nan='skip').",
                           self.skipped_steps - skipped_before)
        if epochs > 0 and hasattr(self.optimizer, "finalize_variable_values"):
            self.optimizer.finalize_variable_values(self.model.trainable_variables)
        callbacks.on_train_end(logs=training_logs)
        return self.model.history

    def _checkpoint_variables(self):
        # model.variables: the weights and the layers' seed-generator states (dropout, ...).
        variables = list(self.model.variables) + list(self._checkpoint_optimizer.variables)
        return variables + self._chain.variables + [self._skipped, self._micro_step] + list(self._accumulators)

    def _restore_checkpoint(self, directory, initial_epoch, cursor=None):
        """Load the newest complete checkpoint in ``directory``; returns ``(seed, epoch, step)``.

        ``cursor`` (a ``_checkpoint.DatasetCursor``, for a dataset input) gets
        the saved random state of the dataset.
        """
        # The optimizer as compiled: callbacks may wrap it during fit, its variables stay.
        self._checkpoint_optimizer = self.optimizer
        loaded = _checkpoint.load(directory)
        if loaded is None:
            seed = self.seed if self.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
            return seed, initial_epoch, 0
        arrays, manifest, data_state = loaded
        if (cursor is None) != (data_state is None):
            raise ValueError(
                "The checkpoint was written for " + ("array" if data_state is None else "dataset")
                + " inputs and this fit has " + ("array" if cursor is None else "dataset")
                + f" inputs. Use a new folder or the same script. Received: checkpoint_dir={directory!r}"
            )
        variables = self._checkpoint_variables()
        if len(arrays) != len(variables) or any(
                tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables)):
            raise ValueError(
                "The checkpoint does not match this model, optimizer and Trainer (other "
                "variables or shapes). Use a new folder or the same script. "
                f"Received: checkpoint_dir={directory!r}"
            )
        for variable, array in zip(variables, arrays):
            variable.assign(array)
        if cursor is not None:
            cursor.restore(data_state)
        logger.info("Resuming from %s: epoch %d, step %d.", manifest["checkpoint"],
                    manifest["epoch"], manifest["step"])
        return int(manifest["seed"]), int(manifest["epoch"]), int(manifest["step"])

    def _checkpoint_saver(self, directory, seed, cursor=None):
        def save(epoch, step):
            arrays = [np.array(keras.ops.convert_to_numpy(v)) for v in self._checkpoint_variables()]
            data_state = None
            if cursor is not None:  # mid-epoch: the state the epoch started from
                data_state = cursor.state() if step == 0 else cursor.epoch_state
            _checkpoint.save(directory, arrays, {"epoch": epoch, "step": step, "seed": seed},
                             data_state=data_state)

        save.seed = seed
        save.cursor = cursor
        return save

    def _rebatch(self, x, y, sample_weight, batch_size):
        """The (distributed) array dataset at a new ``batch_size``, and its number of steps."""
        n = len(tf.nest.flatten(x)[0])
        dataset = _data.array_dataset(x, y, sample_weight, batch_size=batch_size,
                                      shuffle=self.shuffle, seed=self.seed, repeat=True)
        return self._distribute(dataset), math.ceil(n / int(batch_size))

    def _ensure_train_function(self):
        """(Re)build the compiled step when ``model.optimizer`` is not the one it traced.

        Called after ``on_train_begin``: callbacks such as
        ``keras_trainkit.callbacks.GradientClipping`` swap ``model.optimizer`` for a
        wrapper there, and a trace kept from an earlier ``fit`` would go on calling
        the optimizer it captured. An unchanged optimizer keeps the existing trace.
        """
        optimizer = self.model.optimizer
        if self._train_function is not None and self._traced_optimizer is optimizer:
            return
        if self._train_function is not None:
            logger.debug("model.optimizer changed since the step was traced; retracing.")
        if not optimizer.built:
            with self.strategy.scope():
                optimizer.build(self.model.trainable_variables)
        self._sam = _find_sam(optimizer)
        self._traced_optimizer = optimizer
        self._train_function = self._make_multi_step(self.train_step,
                                                     halt_on_nonfinite=self.on_nan != "skip")

    def _run_epoch(self, iterator, steps, callbacks, epoch, first_step=0, save=None, every=None):
        """One epoch of calls; reads nothing back from the device when ``steps`` is known.

        ``iterator`` may run on past this epoch (arrays); each call then asks
        for at most the epoch's remaining steps. ``first_step`` batches were done
        before (a resumed epoch); ``save(epoch, step)`` writes a checkpoint each
        time ``step`` passes a multiple of ``every``.
        """
        train_step = _bound_call(self._train_function, iterator)
        k = self.steps_per_execution
        limits = _StepLimits(k)
        step = first_step
        logs = {}
        while steps is None or step < steps:
            callbacks.on_train_batch_begin(step)
            n, _, step_logs = train_step(limits(None if steps is None else steps - step))
            n = int(n) if steps is None else min(k, steps - step)
            if n == 0:
                break
            logs = step_logs
            step += n
            callbacks.on_train_batch_end(step - 1, logs)
            if save is not None and every and step // every > (step - n) // every and (
                    steps is None or step < steps):
                save(epoch, step)
            if self.model.stop_training or n < k:
                break
        if self.on_nan != "skip" and bool(self._halted.numpy()):
            batch = int(self._nan_batch.numpy())
            message = (f"Non-finite loss in epoch {epoch + 1} (batch {batch} of this fit): its "
                       f"update and the rest of the epoch were skipped; training stops "
                       f"(on_nan={self.on_nan!r}).")
            if self.on_nan == "raise":
                raise NonFiniteLossError(message)
            logger.warning(message)
            self.model.stop_training = True
        return _pythonify(logs)

    def evaluate(self, x, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 callbacks=None, return_dict=False, _internal=None):
        """Loss and metrics over ``x``; like ``model.evaluate``."""
        verbose = self._check_verbose(verbose)
        if _internal is not None:  # a dataset prepared by fit, with its number of batches
            dataset, steps = x, _internal or None
        else:
            dataset, steps = self._prepare(x, y, sample_weight, batch_size, shuffle=False)
        self._ensure_built(dataset)
        distributed = self._distribute(dataset)
        if self._test_function is None:
            self._test_function = self._make_multi_step(self._cross_replica_test_step,
                                                        halt_on_nonfinite=False)
        callbacks = self._callback_list(callbacks, verbose, 1, steps, history=False)
        callbacks.on_test_begin()
        self.model.reset_metrics()
        iterator = iter(distributed)
        test_step = _bound_call(self._test_function, iterator)
        limits = _StepLimits(self.steps_per_execution)
        step, logs = 0, {}
        while steps is None or step < steps:
            callbacks.on_test_batch_begin(step)
            n, _, step_logs = test_step(limits(None if steps is None else steps - step))
            n = int(n) if steps is None else min(self.steps_per_execution, steps - step)
            if n == 0:
                break
            logs = step_logs
            step += n
            callbacks.on_test_batch_end(step - 1, logs)
            if n < self.steps_per_execution:
                break
        logs = _pythonify(logs)
        callbacks.on_test_end(logs)
        if return_dict:
            return logs
        values = [logs[name] for name in logs]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose=0):
        """Model outputs over ``x`` (arrays or a dataset) as NumPy arrays."""
        verbose = self._check_verbose(verbose)
        if _data.is_dataset(x):
            dataset = x
        else:
            _data.check_arrays(x, None, None, self.model)
            dataset = _data.array_dataset(x, batch_size=32 if batch_size is None else batch_size,
                                          shuffle=False)
        if self._predict_function is None:
            strategy = self.strategy

            def one_step(data):
                out = strategy.run(self.predict_step, args=(data,))
                return tf.nest.map_structure(
                    lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), out)

            self._predict_function = one_step if self.run_eagerly else tf.function(
                one_step, reduce_retracing=True)
        outputs = []
        for batch in self._distribute(dataset):
            outputs.append(tf.nest.map_structure(lambda t: t.numpy(), self._predict_function(batch)))
        if not outputs:
            raise ValueError("Argument `x` must yield at least one batch. Received: empty data")
        return tf.nest.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)
