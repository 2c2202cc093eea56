"""Checks and set-up of the Trainer: its arguments, and a ``fit``'s validation data, checkpointer, callbacks."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_trainkit.callbacks.gradient_clipping import GradientClipping
from keras_trainkit.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from keras_trainkit.training import _data
from keras_trainkit.training._fit_options import apply_class_weight
from keras_trainkit.training.checkpointer import (
    Checkpointer,
    DatasetCursor,
    data_fingerprint,
    dataset_fingerprint,
)
from keras_trainkit.training.epoch_plan import EpochPlan, prepare_inputs
from keras_trainkit.training.evaluation import steps_to_run
from keras_trainkit.training.non_finite import ON_NAN_POLICIES
from keras_trainkit.utils.validation import (
    check_in,
    check_non_negative,
    check_positive,
    check_probability,
    check_type,
)


def check_backend() -> None:
    """Refuse a Keras backend other than TensorFlow with a ``RuntimeError`` that says what to use.

    The Trainer is a ``tf.GradientTape`` loop in a ``tf.function`` (with
    ``tf.distribute``): on JAX or PyTorch the model's variables are not
    TensorFlow variables and nothing in it would run.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    raise RuntimeError(
        "keras_trainkit.training.Trainer is a TensorFlow GradientTape loop and needs the "
        f"TensorFlow backend; the Keras backend is {backend!r}. On {backend}, train with "
        "model.compile(...) and model.fit(...) with keras_trainkit's pieces, which cover the "
        "Trainer's hooks: keras_trainkit.callbacks.GradientClipping (clipping), TrainingMonitor "
        "(gradient norms, update ratios), SpikeDetection (skip, stop or restore on loss spikes), "
        "keras_trainkit.optimizers.TransformedOptimizer (any gradient transform, SkipNonFinite "
        "included) and the optimizer's gradient_accumulation_steps; or set "
        "KERAS_BACKEND=tensorflow to use the Trainer."
    )


def check_trainer_arguments(*, model, jit_compile, steps_per_execution, gradient_accumulation_steps, on_nan,
                            shuffle, run_eagerly, seed, strategy) -> None:
    """Validate the Trainer's constructor arguments before any work."""
    check_type("model", model, keras.Model)
    check_in("jit_compile", jit_compile, ("auto", True, False))
    check_positive("steps_per_execution", steps_per_execution, integer=True)
    check_positive("gradient_accumulation_steps", gradient_accumulation_steps, integer=True)
    check_in("on_nan", on_nan, ON_NAN_POLICIES)
    check_type("shuffle", shuffle, bool)
    check_type("run_eagerly", run_eagerly, bool)
    if seed is not None:
        check_type("seed", seed, int)
        check_non_negative("seed", seed, integer=True)  # NumPy seeds the checkpointed order
    if strategy is not None:
        check_type("strategy", strategy, tf.distribute.Strategy)


def compile_model(model, optimizer, loss, metrics, strategy, from_model=False) -> None:
    """Compile ``model`` for the Trainer in ``strategy``'s scope (or check it is, ``from_model``)."""
    with strategy.scope():
        if from_model:
            if not getattr(model, "compiled", False) or model.optimizer is None:
                raise ValueError(
                    "`Trainer.from_compiled` needs a model compiled with an optimizer and "
                    f"a loss. Received: model={model.name!r} (not compiled)"
                )
        else:
            if optimizer is None:  # Keras compiles it, leaving a model that cannot train
                raise ValueError("Argument `optimizer` must be a Keras optimizer, its name or its "
                                 "config (e.g. \"adam\"). Received: optimizer=None")
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=False)
    if getattr(model.optimizer, "gradient_accumulation_steps", None):
        raise ValueError(
            "Give gradient accumulation to the Trainer, not to the optimizer: the "
            "optimizer's own accumulation makes schedules count micro-batches. "
            f"Received: optimizer.gradient_accumulation_steps={model.optimizer.gradient_accumulation_steps}"
        )


def build_on_one_batch(model, dataset, strategy, compute_loss) -> None:
    """Build the model, its compiled loss and metrics on one batch of ``dataset``, eagerly.

    Runs ``model(x, training=False)`` (no update, no dropout randomness) so that
    every variable exists before a step is traced; the metrics are reset after.
    A distributed dataset's batch holds one part per replica: the first builds.
    """
    batch = next(iter(dataset.take(1) if isinstance(dataset, tf.data.Dataset) else dataset))
    batch = tf.nest.map_structure(lambda part: strategy.experimental_local_results(part)[0], batch)
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
    with strategy.scope():
        y_pred = model(x, training=False)
        if y is not None:
            compute_loss(x, y, y_pred, sample_weight, training=False)
            model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        model.reset_metrics()


def check_penalties(penalties) -> list:
    """``penalties`` as a list of callables ``penalty(model, x, y, training)``."""
    if penalties is not None and not isinstance(penalties, (list, tuple)):
        penalties = [penalties]
    for penalty in penalties or []:
        if not callable(penalty):
            raise TypeError(
                "Argument `penalties` must hold callables `penalty(model, x, y, training)` "
                "such as keras_trainkit.regularizers.JacobianPenalty. "
                f"Received: penalties={penalties!r}"
            )
    return list(penalties or [])


def check_verbose(verbose):
    """``verbose`` as Keras takes it (``"auto"`` is 1)."""
    check_in("verbose", verbose, ("auto", 0, 1, 2))
    return 1 if verbose == "auto" else verbose


def check_fit_arguments(x, *, epochs, initial_epoch, validation_split, verbose, checkpoint_dir,
                        checkpoint_every_n_steps, steps_per_epoch, validation_data=None,
                        validation_steps=None):
    """Validate ``fit``'s arguments before any work; returns ``verbose`` resolved."""
    check_non_negative("epochs", epochs, integer=True)
    check_non_negative("initial_epoch", initial_epoch, integer=True)
    check_probability("validation_split", validation_split)
    if steps_per_epoch is not None:
        check_positive("steps_per_epoch", steps_per_epoch, integer=True)
    if validation_steps is not None:
        check_positive("validation_steps", validation_steps, integer=True)
        if validation_data is None and not validation_split:
            raise ValueError("Argument `validation_steps` needs validation data (`validation_data` "
                             f"or `validation_split`). Received: validation_steps={validation_steps}")
    if checkpoint_dir is not None:
        check_type("checkpoint_dir", checkpoint_dir, (str, os.PathLike))
        if _data.is_dataset(x):
            _data.check_resumable(x)
    if checkpoint_every_n_steps is not None:
        check_positive("checkpoint_every_n_steps", checkpoint_every_n_steps, integer=True)
        if checkpoint_dir is None:
            raise ValueError(
                "Argument `checkpoint_every_n_steps` needs a `checkpoint_dir`. "
                f"Received: checkpoint_every_n_steps={checkpoint_every_n_steps}"
            )
    if validation_split and _data.is_dataset(x):
        raise ValueError(
            "Argument `validation_split` only works with array inputs; pass "
            f"`validation_data` with a dataset. Received: validation_split={validation_split}"
        )
    return check_verbose(verbose)


def validation_inputs(validation_data, batch_size, model, seed, validation_steps=None,
                      validation_batch_size=None):
    """``(dataset, steps, count)`` of each validation, or ``None`` without validation data
    (``count``: the data may end before ``steps``, so the step loop reads back how many ran).

    Each validation runs a fresh iterator over the dataset (as ``model.fit``,
    which resets its evaluation iterator every time): a whole pass, or its first
    ``validation_steps`` batches (fewer where the data ends). Array validation
    data is batched by ``validation_batch_size``, else by ``batch_size``.

    Raises:
        ValueError: an infinite dataset without ``validation_steps``; a
            ``validation_batch_size`` that is not a positive integer, or given
            with a dataset (which ``model.fit`` would ignore without a word).
    """
    if validation_batch_size is not None:
        check_positive("validation_batch_size", validation_batch_size, integer=True)
        if validation_data is not None and _data.is_dataset(validation_data):
            raise ValueError(
                "Argument `validation_batch_size` must be None when `validation_data` is a "
                "tf.data.Dataset (batch the dataset instead). "
                f"Received: validation_batch_size={validation_batch_size}"
            )
    if validation_data is None:
        return None
    if _data.is_dataset(validation_data):
        vx, vy, vw, batch_size = validation_data, None, None, None
    else:
        vx, vy, vw = keras.utils.unpack_x_y_sample_weight(tuple(validation_data))
        batch_size = validation_batch_size or batch_size
    dataset, pass_steps = prepare_inputs(vx, vy, vw, batch_size, model, shuffle=False, seed=seed,
                                         name="validation_data")
    steps = steps_to_run(dataset, pass_steps, validation_steps, name="validation_data",
                         steps_name="validation_steps")
    return dataset, steps, validation_steps is not None


def fit_inputs(trainer, x, y, sample_weight, *, batch_size, validation_data, validation_split,
               validation_steps, initial_epoch, steps_per_epoch, ordered, needs_targets, class_weight=None,
               validation_batch_size=None):
    """The data of one ``fit`` of ``trainer``, checked before any work: ``(plan, validation)``,
    the :class:`EpochPlan` of the training data (after ``validation_split`` took its last
    examples) and :func:`validation_inputs`. ``needs_targets``: the loss reads ``y``.
    ``class_weight`` weighs the training examples (not the validation ones), as in ``fit``."""
    model = trainer.model
    _data.check_input_kind(x, "x")
    _data.check_input_kind(validation_data, "validation_data")
    _data.check_targets(model, x, y, "x", needs_targets)
    if validation_data is not None and not _data.is_dataset(validation_data):
        _data.check_targets(model, validation_data,
                            keras.utils.unpack_x_y_sample_weight(tuple(validation_data))[1],
                            "validation_data", needs_targets)
    if validation_split and validation_data is None:
        _data.check_arrays(x, y, sample_weight, model)
        (x, y, sample_weight), validation_data = _data.split_validation(x, y, sample_weight, validation_split)
    x, y, sample_weight = apply_class_weight(x, y, sample_weight, class_weight)
    plan = EpochPlan(x, y, sample_weight, batch_size, model=model, strategy=trainer.strategy,
                     shuffle=trainer.shuffle, seed=trainer.seed, initial_epoch=initial_epoch,
                     steps_per_epoch=steps_per_epoch, ordered=ordered)
    validation = validation_inputs(validation_data, plan.batch_size, model, trainer.seed, validation_steps,
                                   validation_batch_size)
    return plan, validation


def make_checkpointer(checkpoint_dir, plan, variables, seed, steps_per_epoch, model=None):
    """The :class:`Checkpointer` of a fit with ``checkpoint_dir`` (``None`` without one).

    ``variables`` returns what to save; ``model``'s learning-rate scales are saved
    too. The run is identified by its input kind, batch size (or schedule), steps
    per epoch and a fingerprint of the data (``plan.data``).
    """
    if checkpoint_dir is None:
        return None
    x, y, sample_weight = plan.data
    cursor = DatasetCursor(plan.dataset) if plan.is_dataset else None
    schedule = plan.schedule
    run = {"inputs": "dataset" if plan.is_dataset else "arrays",
           "batch_size": schedule.get_config() if schedule is not None else plan.batch_size,
           "data": dataset_fingerprint(x) if plan.is_dataset else data_fingerprint(x, y, sample_weight),
           "steps_per_epoch": steps_per_epoch}
    checkpointer = Checkpointer(os.fspath(checkpoint_dir), variables, run, seed=seed, cursor=cursor,
                                model=model)
    checkpointer.run["steps"] = plan.steps if schedule is None else None
    return checkpointer


def callback_list(callbacks, model, *, verbose, epochs, steps, history):
    """A ``keras.callbacks.CallbackList`` of ``callbacks`` (with a History and progress bar as in ``fit``)."""
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
        verbose=verbose, epochs=epochs, steps=steps, model=model,
    )


def check_resumable(callbacks, carried_transform_state, gradient_accumulation_steps, checkpoint_dir,
                    schedule_learning_rate=False) -> None:
    """Refuse a resume mechanism that cannot hold the state this fit carries from step to step.

    * ``keras.callbacks.BackupAndRestore`` saves ``model.save_weights`` (the model and
      its optimizer) and an epoch, not the Trainer's own state: the state its gradient
      transforms carry (``carried_transform_state``, ``GradientChain.carried_variables``:
      e.g. ``AutoClip``'s norm history; per-step statistics such as ``ClipByGlobalNorm``'s
      ``grad_norm`` are not carried), with ``gradient_accumulation_steps > 1`` the partial
      gradient sum that carries over epochs, or the state of a transform a callback
      attaches (``GradientClipping.carries_state``), or ``ReduceLROnPlateau``'s reductions of
      a learning-rate schedule (``schedule_learning_rate``: the ``ScaledSchedule`` scale,
      kept outside the optimizer's variables; the checkpoints save it).
    * ``checkpoint_dir`` saves the Trainer's own state but not a callback's attached
      transform (the checkpoint holds the optimizer as compiled).

    A run either restored would train differently from the uninterrupted one, so this
    raises a ``ValueError`` naming the remedy. (The count of skipped non-finite steps, a
    report, restarts at 0 after a ``BackupAndRestore``.)
    """
    listed = callbacks.callbacks if isinstance(callbacks, keras.callbacks.CallbackList) else callbacks or []
    clippers = [f"GradientClipping({c.mode!r})" for c in listed
                if isinstance(c, GradientClipping) and c.carries_state]
    if checkpoint_dir is not None and clippers:
        raise ValueError(
            f"Argument `callbacks` holds {clippers[0]}, whose AutoClip history "
            "lives on the callback, not in the Trainer's checkpoints (`checkpoint_dir`), so a resumed "
            "run would clip differently from the uninterrupted one. Pass "
            "`gradient_transforms=[AutoClip(...)]` to the Trainer instead: its checkpoints save that "
            f"history. Received: callbacks={list(listed)!r:.200}, checkpoint_dir={checkpoint_dir!r}"
        )
    backups = [c for c in listed if isinstance(c, keras.callbacks.BackupAndRestore)]
    unsaved = []  # what a BackupAndRestore backup would not hold
    if carried_transform_state:
        unsaved.append("the gradient transforms' state")
    if gradient_accumulation_steps > 1:
        unsaved.append("the partial gradient sum")
    unsaved.extend(f"{name}'s AutoClip history" for name in clippers)
    if schedule_learning_rate and any(isinstance(c, ReduceLROnPlateau) for c in listed):
        unsaved.append("ReduceLROnPlateau's reductions of the learning-rate schedule")
    if not backups or not unsaved:
        return
    raise ValueError(
        "Argument `callbacks` holds keras.callbacks.BackupAndRestore, which saves the model and its "
        f"optimizer but not {' or '.join(unsaved)} of this fit, so a run it restores would train "
        "differently from the uninterrupted one. Use `Trainer.fit(checkpoint_dir=...)`, with any "
        "AutoClip in `gradient_transforms`, which saves them too. Received: "
        f"callbacks={list(listed)!r:.200}, gradient_accumulation_steps={gradient_accumulation_steps}"
    )


def restore_checkpoint(checkpointer, plan, initial_epoch, verbose):
    """``(epoch, step)`` a ``fit`` starts from: its checkpoint's, when ``checkpointer`` holds
    one (``plan`` moved to its data position; "Resumed from ..." printed unless ``verbose``
    is 0), else ``(initial_epoch, 0)``."""
    if checkpointer is None:
        return initial_epoch, 0
    epoch, step, position = checkpointer.restore(initial_epoch)
    plan.resume_at(position, epoch, step)
    if checkpointer.resumed and verbose:
        print(checkpointer.resumed)
    return epoch, step
