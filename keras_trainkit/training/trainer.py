"""The :class:`Trainer`: a compiled ``GradientTape`` loop with Keras callbacks and gradient hooks.

The Trainer is configuration plus its hooks; ``fit``, ``evaluate`` and
``predict`` (the last two and each epoch of ``fit`` in :mod:`.loops`)
orchestrate its parts, each in its own module with its own state:
:mod:`.step_loop` (the one loop of calls), :mod:`.compiled` (the compiled
functions), :mod:`.replicas` (replica reduction), :mod:`.epoch_plan` (each
epoch's batches), :mod:`.checkpointer` (resume), :mod:`.non_finite` (the
``on_nan`` policy), :mod:`.accumulation` and ``optimizers.transforms.GradientChain``.
"""

from __future__ import annotations

import inspect
import logging

import keras
import tensorflow as tf

from keras_trainkit._compat.keras import (
    clear_initial_epoch,
    compute_loss_with_training_flag,
    initial_epoch_set_by_callbacks,
)
from keras_trainkit.optimizers import control
from keras_trainkit.optimizers.transforms import GradientChain, SkipNonFinite
from keras_trainkit.training import replicas
from keras_trainkit.training._fit_options import check_class_weight, check_validation_freq, should_validate
from keras_trainkit.training.accumulation import GradientAccumulator
from keras_trainkit.training.compiled import StepFunctions, pin_gradients, resolve_jit
from keras_trainkit.training.evaluation import TrainingBatches
from keras_trainkit.training.loops import TrainerLoops
from keras_trainkit.training.setup import (
    build_on_one_batch,
    check_penalties,
    check_resumable,
    check_backend,
    check_trainer_arguments,
    callback_list,
    check_fit_arguments,
    compile_model,
    fit_inputs,
    make_checkpointer,
    restore_checkpoint,
)
from keras_trainkit.training.non_finite import NonFiniteGuard, NonFiniteLossError, all_finite
from keras_trainkit.training.step_loop import StepLoop

logger = logging.getLogger(__name__)

_FROM_MODEL = object()

__all__ = ["NonFiniteLossError", "Trainer"]


def _is_sam(optimizer) -> bool:
    return callable(getattr(optimizer, "compute_gradients", None)) and hasattr(optimizer, "rho")


def _takes_state_variables(compute_gradients) -> bool:
    """Whether a SAM-like ``compute_gradients`` takes ``state_variables`` (ours does; one
    written before it existed may not, and is called as it was then)."""
    parameters = inspect.signature(compute_gradients).parameters.values()
    return any(p.name == "state_variables" or p.kind is p.VAR_KEYWORD for p in parameters)


class Trainer(TrainerLoops):
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

    Non-finite steps (a NaN/Inf loss on any replica, or NaN/Inf gradients
    with a finite loss) are never applied; ``on_nan`` says what follows:
    ``"stop"`` (default: skip the rest of the epoch, warn, stop), ``"skip"``
    (skip the step, count it in ``trainer.skipped_steps``) or ``"raise"``
    (:class:`NonFiniteLossError` at the epoch end); see
    :mod:`keras_trainkit.training.non_finite`. With a ``SkipNonFinite`` among
    ``gradient_transforms``, non-finite gradients are its job.

    ``evaluate``, ``predict`` and validation run at an optimizer's evaluation
    weights (``ScheduleFree``'s ``x``): :mod:`keras_trainkit.training.evaluation`.

    Custom objectives: subclass and override :meth:`compute_loss` (the loss from
    ``x, y, y_pred``, per replica, inside the tape); for more control override
    :meth:`compute_gradients`, :meth:`replica_step`, :meth:`train_step`,
    :meth:`test_step` or :meth:`predict_step`. How the Trainer is built (its
    parts and where each concern lives): ``docs/custom_loop.md``.

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
            ``t(grads, variables) -> grads``, run by the same
            ``GradientChain`` as ``TransformedOptimizer``: a ``SkipNonFinite``
            skips the rest of the chain and the update.
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

    Raises:
        RuntimeError: on a Keras backend other than TensorFlow; the message
            names what covers the Trainer's hooks in ``model.fit`` there.

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
        check_backend()
        check_trainer_arguments(model=model, jit_compile=jit_compile, steps_per_execution=steps_per_execution,
                                gradient_accumulation_steps=gradient_accumulation_steps, on_nan=on_nan,
                                shuffle=shuffle, run_eagerly=run_eagerly, seed=seed, strategy=strategy)
        self._chain = GradientChain(gradient_transforms, allow_callables=True)
        self.gradient_transforms = list(self._chain.transforms)
        self.penalties = check_penalties(penalties)
        self.model = model
        self.strategy = strategy or tf.distribute.get_strategy()
        self.steps_per_execution = int(steps_per_execution)
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.on_nan = on_nan
        self.shuffle = shuffle
        self.seed = seed
        self.run_eagerly = run_eagerly
        compile_model(self.model, optimizer, loss, metrics, self.strategy, from_model=optimizer is _FROM_MODEL)
        self.jit_compile = resolve_jit(jit_compile, model, self.strategy, run_eagerly)
        # Non-finite gradients are SkipNonFinite's job when the chain has one.
        self._guard_gradients = not any(isinstance(t, SkipNonFinite) for t in self.gradient_transforms)
        self.non_finite = NonFiniteGuard(on_nan)
        self._accumulator = GradientAccumulator(gradient_accumulation_steps)
        self._loop = StepLoop(steps_per_execution)
        self._functions = StepFunctions(self)
        self._sam, self._sam_state = None, False
        self._state_built = False
        self._training_batches = TrainingBatches()

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

    @property
    def optimizer(self):
        """The optimizer (``model.optimizer``; a loss-scale wrapper under ``mixed_float16``)."""
        return self.model.optimizer

    def optimizer_changed(self, optimizer) -> None:
        """Called when a step is traced for ``optimizer``: finds a SAM optimizer in its wrappers."""
        self._sam = control.find_optimizer(optimizer, _is_sam)
        self._sam_state = self._sam is not None and _takes_state_variables(self._sam.compute_gradients)

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite loss or gradients (``on_nan``), over every ``fit``."""
        return self.non_finite.skipped_steps

    # ------------------------------------------------------------------ hooks
    def compute_loss(self, x, y, y_pred, sample_weight=None, training=True):
        """The scalar objective of one batch; override for a custom objective.

        The default is the compiled loss plus the model's own losses
        (``model.losses``: regularizers, ``add_loss``), exactly as in ``fit``.
        """
        return compute_loss_with_training_flag(self.model, x, y, y_pred, sample_weight, training)

    def compute_gradients(self, x, y, sample_weight=None):
        """Forward and backward pass: returns ``(loss, y_pred, gradients)``.

        The objective is :meth:`compute_loss` plus the ``penalties`` (each
        ``penalty(model, x, y, training=True)``, divided by the number of
        replicas like the loss), evaluated inside the tape so that input-gradient
        penalties are differentiated through. With a
        ``keras_trainkit.optimizers.SAM`` optimizer the gradients are SAM's, taken
        at the perturbed weights ``w + e(w)`` (``SAM.compute_gradients``, given the
        model's non-trainable state where it takes ``state_variables``); the
        returned loss is the one at ``w``. Gradients are those of
        ``optimizer.scale_loss(loss)``; the Trainer unscales them afterwards.
        """
        variables = self.model.trainable_variables
        first = {}

        def objective():
            y_pred = self.model(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            if self.penalties:
                replicas_in_sync = tf.distribute.get_strategy().num_replicas_in_sync
                for penalty in self.penalties:
                    extra = penalty(self.model, x, y, training=True)
                    loss = loss + tf.cast(extra, loss.dtype) / replicas_in_sync
            first.setdefault("loss", loss)
            first.setdefault("y_pred", y_pred)
            return self.optimizer.scale_loss(loss)

        if self._sam is not None:
            state = {"state_variables": self.model.non_trainable_variables} if self._sam_state else {}
            _, grads = self._sam.compute_gradients(objective, variables, **state)
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
        """Forward and backward pass of one replica; updates loss and metrics if the loss is finite.

        Runs in a replica context. Returns ``(finite, grads)``: whether the loss
        was finite on every replica, and this replica's unscaled gradients.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        loss, y_pred, grads = self.compute_gradients(x, y, sample_weight)
        grads = replicas.unscale(self.optimizer, grads)
        finite = replicas.all_replicas_finite(loss)
        batch = tf.shape(tf.nest.flatten(x)[0])[0]

        def update_metrics():
            replicas.update_loss_and_metrics(self.model, loss, batch, x, y, y_pred, sample_weight)
            return tf.constant(True)

        tf.cond(finite, update_metrics, lambda: tf.constant(False))
        return finite, grads

    def train_step(self, data):
        """One micro-batch: replica passes, NaN policy, accumulation, transforms, update.

        Runs in a cross-replica context (the replicas' :meth:`replica_step` via
        ``strategy.run``, then one update from the summed gradients). Returns a
        boolean scalar for the ``on_nan`` policy: whether the loss and the
        gradients were finite. Under a loss-scale optimizer (``mixed_float16``)
        overflowing gradients are its business, as in ``fit``: it gets them
        directly (not through accumulation or the transforms), skips the update
        and lowers its scale, and the step counts as finite. Under XLA the
        gradients reach the update through an XLA optimization barrier (see
        ``keras_trainkit.training.compiled.pin_gradients``).
        """
        loss_finite, grads = replicas.summed_gradients(self.strategy, self.replica_step, data)
        self.non_finite.note_loss(loss_finite)
        variables = self.model.trainable_variables
        finite = step_ok = loss_finite
        if replicas.is_loss_scaled(self.optimizer):
            overflow = tf.logical_and(loss_finite, tf.logical_not(all_finite(grads)))
            finite = tf.logical_and(loss_finite, tf.logical_not(overflow))

            def lower_scale():
                self._optimizer_apply(grads, variables)
                return tf.constant(True)

            tf.cond(overflow, lower_scale, lambda: tf.constant(False))
        elif self._guard_gradients:
            finite = step_ok = tf.logical_and(loss_finite, all_finite(grads))
        if self.jit_compile and self.strategy.num_replicas_in_sync == 1:
            finite, grads = pin_gradients(finite, grads)

        def update():
            self._accumulator.add(grads, lambda g: self.apply_gradients(g, variables))
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))
        return step_ok

    def test_step(self, data):
        """One evaluation batch of one replica: forward pass, loss and metrics (no update)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self.model(x, training=False)
        loss = self.compute_loss(x, y, y_pred, sample_weight, training=False)
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        replicas.update_loss_and_metrics(self.model, loss, batch, x, y, y_pred, sample_weight)
        return tf.constant(True)

    def predict_step(self, data):
        """One prediction batch: ``model(x, training=False)``."""
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.model(x, training=False)

    def evaluation_weights(self):
        """Where ``evaluate``, ``predict`` and validation run: a context manager with ``resume()`` and
        ``finalize()`` (see :mod:`keras_trainkit.training.evaluation`; override to evaluate elsewhere)."""
        return self._training_batches.swap(self.model)

    # ------------------------------------------------------------- the update
    def _optimizer_apply(self, grads, variables):
        """``optimizer.apply`` from a cross-replica context, with the loss scale put back."""
        replicas.apply_from_cross_replica(self.strategy, self.optimizer, grads, variables)

    # ------------------------------------------------------- building, tracing
    def _ensure_built(self, dataset):
        """Build the model, compiled loss, metrics and every piece of state, eagerly, once."""
        if self._state_built:
            return
        build_on_one_batch(self.model, dataset, self.strategy, self.compute_loss)
        with self.strategy.scope():
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
            self._chain.build(self.model.trainable_variables)
        self.non_finite.build(self.strategy)
        self._accumulator.build(self.model.trainable_variables, self.strategy)
        self._state_built = True

    # ------------------------------------------------------------ public loop
    def fit(self, x, y=None, batch_size=None, epochs=1, validation_data=None,
            validation_split=0.0, callbacks=None, initial_epoch=0, verbose="auto",
            sample_weight=None, checkpoint_dir=None, checkpoint_every_n_steps=None,
            steps_per_epoch=None, validation_steps=None, class_weight=None, validation_freq=1,
            validation_batch_size=None):
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
            callbacks: Keras callbacks, run unchanged (``BackupAndRestore``, which saves only
                the model and optimizer, is refused when transforms carry state, gradients
                accumulate or ``ReduceLROnPlateau`` scales a learning-rate schedule: use
                ``checkpoint_dir``; ``GradientClipping("autoclip")``
                is refused with ``checkpoint_dir``: pass ``AutoClip`` in ``gradient_transforms``).
            initial_epoch: epoch to start from.
            verbose: ``"auto"``/1 progress bar, 2 one line per epoch, 0 silent.
            sample_weight: per-example weights for array inputs.
            checkpoint_dir: a folder for crash-safe resume: an atomic checkpoint
                (``keras_trainkit.training.checkpointer``) at each epoch end and
                every ``checkpoint_every_n_steps`` steps; when the folder holds
                one, ``fit`` restores it and continues from its position (the
                same script rerun after a crash resumes, and says so); one of
                another run (other data, batch size, steps per epoch) is refused.
                A ``tf.data.Dataset`` must have a reproducible order (seeded
                shuffles, no ``deterministic=False``); see ``docs/custom_loop.md``.
            checkpoint_every_n_steps: steps between checkpoints inside an
                epoch (a positive integer), or ``None`` for epoch ends only.
            steps_per_epoch: steps per epoch (Keras's meaning: one iterator
                runs on across epochs; where a pass over finite data has fewer
                batches left, the epoch ends with them and the next starts a new
                pass), or ``None`` for one pass over the data. Required for an
                infinite dataset (``dataset.repeat()``).
            validation_steps: batches of each validation, the first of the
                validation data each time, as in ``fit`` (fewer where the data ends),
                or ``None`` for a whole pass; required for an infinite validation
                dataset.
            class_weight: ``{class id: weight}``, as in ``fit``: each training example
                weighs its class's weight (1 for a class not listed; the class is the
                integer label, or the argmax of a one-hot target); not with
                ``sample_weight`` or a dataset yielding sample weights, nor for several outputs.
            validation_freq: as in ``fit``: validate after every ``validation_freq``-th
                epoch (an integer), or after the epochs listed (1-based, e.g. ``[1, 5, 10]``).
            validation_batch_size: batch size of array validation data (also of
                ``validation_split``'s), as in ``fit``; ``None``: ``batch_size`` (a schedule's
                at ``initial_epoch``). Refused with a validation dataset, which ``fit`` ignores.
        """
        verbose = check_fit_arguments(
            x, epochs=epochs, initial_epoch=initial_epoch, validation_split=validation_split, verbose=verbose,
            checkpoint_dir=checkpoint_dir, checkpoint_every_n_steps=checkpoint_every_n_steps,
            steps_per_epoch=steps_per_epoch, validation_data=validation_data,
            validation_steps=validation_steps)
        validation_freq = check_validation_freq(validation_freq)
        class_weight = check_class_weight(class_weight)
        plan, validation = fit_inputs(
            self, x, y, sample_weight, batch_size=batch_size, validation_data=validation_data,
            validation_split=validation_split, validation_steps=validation_steps, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, ordered=checkpoint_dir is not None, class_weight=class_weight,
            validation_batch_size=validation_batch_size,
            needs_targets=self._loss_reads_targets())
        self._ensure_built(plan.dataset)
        check_resumable(callbacks, self._chain.carried_variables, self.gradient_accumulation_steps,
                        checkpoint_dir, schedule_learning_rate=any(
                            handle.is_schedule for handle in control.learning_rate_handles(self.model)))
        self._training_batches.remember(plan, self.model)
        callbacks = callback_list(callbacks, self.model, verbose=verbose, epochs=epochs, steps=plan.steps,
                                  history=True)
        self._compiled_optimizer = self.optimizer
        checkpointer = make_checkpointer(checkpoint_dir, plan, self._checkpoint_variables, self.seed,
                                         steps_per_epoch, model=self.model)
        initial_epoch, resume_step = restore_checkpoint(checkpointer, plan, initial_epoch, verbose)
        self.model.stop_training = False
        self.non_finite.begin_fit()
        clear_initial_epoch(self.model)
        self.evaluation_weights().resume()
        with control.loop_state(self.model, self._training_state_variables, self.steps_per_execution):
            callbacks.on_train_begin()
            self._functions.train()  # traced and the optimizer built before the first epoch, as in fit
            initial_epoch = initial_epoch_set_by_callbacks(self.model, default=initial_epoch)
            logs = None
            for epoch in range(initial_epoch, epochs):
                first_step = resume_step if epoch == initial_epoch else 0
                logs = self._fit_epoch(epoch, first_step, plan, callbacks, checkpointer, checkpoint_every_n_steps,
                                       validation if should_validate(epoch, validation_freq) else None)
                if self.model.stop_training:
                    break
            self.non_finite.end_fit()
            if epochs > 0 and hasattr(self.optimizer, "finalize_variable_values"):
                self.optimizer.finalize_variable_values(self.model.trainable_variables)
                self.evaluation_weights().finalize()
            callbacks.on_train_end(logs=logs)
        return self.model.history

    def _loss_reads_targets(self) -> bool:
        """Whether the loss reads ``y``: the default :meth:`compute_loss` does, an override may not."""
        return type(self).compute_loss is Trainer.compute_loss

    def _checkpoint_variables(self):
        """What a checkpoint saves, in a fixed order: model, optimizer as compiled, transforms, counters."""
        # The optimizer as compiled: callbacks may wrap it during fit, its variables stay.
        return (control.model_state_variables(self.model) + list(self._compiled_optimizer.variables)
                + self._own_variables())

    def _training_state_variables(self):
        """Every variable the next step reads (``control.training_state_variables`` while fitting).

        Unlike a checkpoint, the optimizer as it is now: transforms a callback
        attached (``GradientClipping``) keep state in the wrapper.
        """
        return (control.model_state_variables(self.model) + list(self.model.optimizer.variables)
                + self._own_variables())

    def _own_variables(self):
        """The state the Trainer keeps outside the model and optimizer: transforms, skip count, accumulated sum."""
        return self._chain.variables + [self.non_finite.skipped] + self._accumulator.variables
