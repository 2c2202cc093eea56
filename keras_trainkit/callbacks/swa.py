"""Stochastic Weight Averaging (Izmailov et al. 2018) as a Keras callback."""

from __future__ import annotations

import logging
import math
import os
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_trainkit._compat.keras import nested_layers
from keras_trainkit.callbacks._monitor import TrainkitCallback
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control, find_evaluation_weights
from keras_trainkit.utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from keras_trainkit.utils.validation import (
    check_bool,
    check_condition,
    check_in,
    check_non_negative,
    check_positive,
    check_type,
)
from keras_trainkit.utils.values import to_float

logger = logging.getLogger(__name__)


def _batch_norm_layers(model):
    return [layer for layer in nested_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _iterate_inputs(data, batch_size, steps):
    """Input batches (NumPy, any backend) from arrays, an ``(x, y)`` tuple or a ``tf.data.Dataset``."""
    import tensorflow as tf

    from keras_trainkit.utils.pipelines import array_dataset

    if not isinstance(data, tf.data.Dataset):
        if isinstance(data, (tuple, list)):
            data = data[0]
        data = array_dataset(data, batch_size=batch_size, shuffle=False)
    if steps is not None:
        data = data.take(steps)
    for batch in data.as_numpy_iterator():
        if isinstance(batch, (tuple, list)):
            batch = keras.utils.unpack_x_y_sample_weight(tuple(batch))[0]
        yield batch


def _check_batch_norm_data(name, data):
    """Refuse ``data`` that :func:`recompute_batch_norm_statistics` could not read.

    Accepted: ``None``, a ``tf.data.Dataset``, or numeric input arrays with a
    batch axis (alone or first in an ``(x, y)`` tuple), checked here so that a
    wrong value fails at construction rather than after all of training.
    """
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset exists only once TensorFlow is imported
    if data is None or (tf is not None and isinstance(data, tf.data.Dataset)):
        return data
    x = data[0] if isinstance(data, (tuple, list)) and len(data) > 0 else data
    try:
        array = np.asarray(x)
    except (ValueError, TypeError):  # ragged nested lists and the like
        array = None
    readable = (array is not None and array.ndim > 0 and len(array) > 0
                and (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_))
    check_condition(
        name, data, readable,
        "must be numeric input arrays with a batch axis, an (x, y) tuple of them, or a "
        "tf.data.Dataset yielding x or (x, y[, sample_weight])",
    )
    return data


def recompute_batch_norm_statistics(model, data, batch_size=32, steps=None):
    """Recompute every BatchNormalization layer's moving statistics over ``data``.

    The moving mean and variance become the plain (cumulative) average of the
    batch statistics over the data: for the ``i``-th batch (1-based) each BN
    layer's momentum is set to ``(i - 1) / i``, so
    ``moving = moving * (i - 1) / i + batch_stat / i``. Momenta are restored
    afterwards. The forward passes run with ``training=True`` and change only
    the BatchNorm statistics: every other variable of the model (the
    random-seed states of ``Dropout`` and the like, other layers' state) is put
    back afterwards, so training after a recomputation draws the same random
    numbers as without it.

    Args:
        model: a Keras model.
        data: input arrays, an ``(x, y)`` tuple of arrays, or a
            ``tf.data.Dataset`` yielding ``x`` or ``(x, y[, sample_weight])``.
        batch_size: batch size when ``data`` holds arrays.
        steps: at most this many batches (``None``: all).

    Returns:
        The number of batches used.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
        >>> recompute_batch_norm_statistics(model, np.ones((8, 3), "float32"), batch_size=4)
        2
    """
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    statistics = {id(w) for layer in layers for w in layer.non_trainable_variables}
    others = [w for w in model.non_trainable_variables if id(w) not in statistics]
    saved = [keras.ops.copy(keras.ops.convert_to_tensor(w)) for w in others]
    count = 0
    try:
        for batch in _iterate_inputs(data, batch_size, steps):
            count += 1
            for layer in layers:
                layer.momentum = (count - 1) / count
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for w, value in zip(others, saved):
            w.assign(value)
    return count


def _check_optimizer_keeps_weights(optimizer):
    """Refuse an optimizer whose end of ``fit`` puts other weights in place of SWA's average.

    ``fit`` and the ``Trainer`` call ``optimizer.finalize_variable_values``
    after the last epoch's ``on_epoch_end`` (where the average is swapped in):
    with ``use_ema=True`` it writes the EMA over the average, and
    ``ScheduleFree`` exchanges the model's weights with its own average ``x``.
    """
    for candidate in control.wrapper_chain(optimizer) + control.leaf_optimizers(optimizer):
        if getattr(candidate, "use_ema", False):
            raise ValueError(
                "SWA needs an optimizer that leaves the trained weights in the model: with `use_ema=True` "
                "the end of fit (finalize_variable_values) writes the EMA over SWA's average. Set "
                "use_ema=False, or use the EMA without SWA. Received: optimizer.use_ema=True"
            )
    source = find_evaluation_weights(optimizer)
    if source is not None and source.swaps_at_end_of_fit:
        raise ValueError(
            "SWA needs an optimizer that leaves the trained weights in the model: "
            f"{type(source).__name__} averages the weights itself and puts its average into the model at "
            "the end of fit, in place of SWA's. Use one of the two. "
            f"Received: optimizer={type(optimizer).__name__}"
        )


def _is_legacy_state(path) -> bool:
    """Whether ``path`` is an SWA state of keras_trainkit 0.1 (``sum_<i>`` arrays, no header)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "n_averaged.npy" in names and "__checkpoint__.npy" not in names


def _load_legacy_state(path, shapes):
    """The sums and counts of a keras_trainkit 0.1 SWA state file, checked against ``shapes``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            sums = [data[f"sum_{i}"] for i in range(len(shapes))]
            meta = {"n_averaged": int(data["n_averaged"]),
                    "averaged_epochs": [int(e) for e in data["averaged_epochs"]]}
    except (KeyError, ValueError, OSError, EOFError) as error:
        raise CheckpointError(f"The SWA state {path!r} (keras_trainkit 0.1 format) is damaged "
                              f"({type(error).__name__}). Delete it to start a new average.") from None
    if [tuple(total.shape) for total in sums] != [tuple(shape) for shape in shapes]:
        raise CheckpointError(f"The SWA state {path!r} was written for other weights than this model's. "
                              "Point `state_path` to another file, or delete it to start a new average.")
    return sums, meta


@register
class SWA(TrainkitCallback):
    """Stochastic Weight Averaging: average the weights visited late in training.

    From the end of epoch ``start_epoch`` (0-based, so ``start_epoch`` epochs
    of ordinary training come first) and then every ``frequency`` epochs, the
    trainable weights ``w`` are added to a running average:
    ``w_swa <- (w_swa * n + w) / (n + 1)``, ``n <- n + 1``
    (kept as a float64 sum). At the end of training the average is swapped
    into the model and, when ``bn_data`` is given, every BatchNormalization
    layer's moving statistics are recomputed over it (the averaged weights
    make the old statistics stale). The swap happens at the end of the last
    scheduled epoch, before callbacks listed after this one (so a
    ``ModelCheckpoint`` after it saves the averaged weights), or at
    ``on_train_end`` when training stopped early. An optimizer that writes
    other weights into the model at the end of ``fit`` (``use_ema=True``,
    ``ScheduleFree``) would replace the average; it is refused with a
    ``ValueError`` at ``on_train_begin``.

    SWA learning rate: with ``swa_learning_rate``, from epoch ``start_epoch``
    the optimizer's learning rate moves from its value ``lr_0`` at that epoch
    to ``swa_learning_rate`` over ``anneal_epochs`` epochs (``t =
    min(1, (epoch - start_epoch + 1) / anneal_epochs)``; linear
    ``lr = (1 - t) lr_0 + t lr_swa``, or cosine ``lr = lr_swa + (lr_0 - lr_swa)
    (1 + cos(pi t)) / 2``) and then stays constant; the original learning rate
    is put back at ``on_train_end``. A ``LearningRateSchedule`` (warm-up +
    cosine, ...) works too: ``lr_0`` is the schedule's value at ``start_epoch``,
    and from then on the schedule is replaced by the annealed rate, as
    PyTorch's ``SWALR`` does (the schedule comes back at ``on_train_end``, so a
    saved model keeps it). Each optimizer of a per-layer set anneals from its
    own ``lr_0``.

    Args:
        start_epoch: first epoch (0-based) whose final weights are averaged.
        frequency: average every this many epochs (>= 1).
        swa_learning_rate: the SWA learning rate, or ``None`` to leave the
            learning rate alone.
        anneal_epochs: epochs to move to ``swa_learning_rate`` (0: at once).
        anneal_strategy: ``"linear"`` or ``"cos"``.
        bn_data: training data for the BatchNorm statistics: arrays, an
            ``(x, y)`` tuple or a ``tf.data.Dataset``. Not part of the config;
            shared, not copied, by ``copy.deepcopy``. Without it a model with
            BatchNorm keeps stale statistics (a warning says so).
        bn_batch_size: batch size for array ``bn_data``.
        bn_steps: at most this many ``bn_data`` batches (``None``: all).
        swap_for_validation: evaluate validation data with the averaged weights
            (swapped in at ``on_test_begin``, out at ``on_test_end``; BatchNorm
            statistics are not recomputed for it).
        state_path: a ``.npz`` file where the running average (and each
            optimizer's ``lr_0``, so that a resumed run anneals from it) is
            saved after each averaging step (atomically, in the library's one
            checkpoint format, ``keras_trainkit.utils.checkpoints``) and read back at
            ``on_train_begin`` when it exists, so an interrupted run resumed
            with ``keras.callbacks.BackupAndRestore`` or the Trainer's
            ``checkpoint_dir`` keeps its average. A damaged file, one
            written for other weights, or one whose average does not end
            before the epoch the ``fit`` starts from (a finished run's, another
            trial's) is refused with a ``CheckpointError`` naming it before any
            step (nothing is overwritten); delete it to start a new average. A
            ``fit`` starting after ``start_epoch`` with no average to resume logs
            a warning. Files of keras_trainkit 0.1 are still read.
        verbose: 0 logs at INFO level, 1 at WARNING level.

    Attributes:
        n_averaged: snapshots in the average.
        averaged_epochs: the epochs that were averaged.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> swa = SWA(start_epoch=1, swa_learning_rate=0.005)
        >>> _ = model.fit(np.ones((8, 2)), np.ones(8), epochs=3, verbose=0, callbacks=[swa])
        >>> swa.n_averaged
        2

    Reference:
        P. Izmailov, D. Podoprikhin, T. Garipov, D. Vetrov, A. G. Wilson,
        "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018.
    """

    _reference_args = ("bn_data",)

    def __init__(
        self,
        start_epoch=10,
        frequency=1,
        swa_learning_rate=None,
        anneal_epochs=0,
        anneal_strategy="linear",
        bn_data=None,
        bn_batch_size=32,
        bn_steps=None,
        swap_for_validation=False,
        state_path=None,
        verbose=0,
    ):
        super().__init__()
        check_non_negative("start_epoch", start_epoch, integer=True)
        check_positive("frequency", frequency, integer=True)
        if swa_learning_rate is not None:
            check_non_negative("swa_learning_rate", swa_learning_rate)
        check_non_negative("anneal_epochs", anneal_epochs, integer=True)
        check_in("anneal_strategy", anneal_strategy, ("linear", "cos"))
        _check_batch_norm_data("bn_data", bn_data)
        check_positive("bn_batch_size", bn_batch_size, integer=True)
        if bn_steps is not None:
            check_positive("bn_steps", bn_steps, integer=True)
        check_bool("swap_for_validation", swap_for_validation)
        if state_path is not None:
            check_type("state_path", state_path, (str, os.PathLike))
            if not str(state_path):
                raise ValueError(f"Argument `state_path` must not be empty. Received: state_path={state_path!r}")
        check_non_negative("verbose", verbose, integer=True)
        self.start_epoch = int(start_epoch)
        self.frequency = int(frequency)
        self.swa_learning_rate = None if swa_learning_rate is None else float(swa_learning_rate)
        self.anneal_epochs = int(anneal_epochs)
        self.anneal_strategy = anneal_strategy
        self.bn_data = bn_data
        self.bn_batch_size = int(bn_batch_size)
        self.bn_steps = None if bn_steps is None else int(bn_steps)
        self.swap_for_validation = swap_for_validation
        self.state_path = None if state_path is None else str(state_path)
        self.verbose = int(verbose)
        self._reset_state()

    def _reset_state(self):
        self.n_averaged = 0
        self.averaged_epochs = []
        self._sum = None
        self._lr_handles = []
        self._swa_lr_start = None
        self._finalized = False
        self._training = False
        self._backup = None
        self._resumed_lr_start = False

    # ----------------------------------------------------------------- helpers
    def _log(self, message, *args):
        logger.log(logging.WARNING if self.verbose else logging.INFO, message, *args)

    def _variables(self):
        return list(self.model.trainable_variables)

    def averaged_weights(self):
        """The current average as a list of arrays (one per trainable variable), or ``None``."""
        if self._sum is None or self.n_averaged == 0:
            return None
        return [
            (total / self.n_averaged).astype(keras.backend.standardize_dtype(v.dtype))
            for total, v in zip(self._sum, self._variables())
        ]

    def _assign(self, values):
        for variable, value in zip(self._variables(), values):
            variable.assign(value)

    def _save_state(self):
        meta = {"kind": "swa", "n_averaged": self.n_averaged, "averaged_epochs": self.averaged_epochs}
        if self._swa_lr_start is not None:  # each optimizer's lr_0, to anneal from after a resume
            meta["swa_lr_start"] = [float(lr) for lr in self._swa_lr_start]
        save_checkpoint(self.state_path, self._sum, meta)

    def _load_state(self):
        if not self.state_path or not Path(self.state_path).exists():
            return
        shapes = [tuple(v.shape) for v in self._variables()]
        if _is_legacy_state(self.state_path):
            sums, meta = _load_legacy_state(self.state_path, shapes)
        else:
            sums, meta, _ = load_checkpoint(self.state_path, expected_shapes=shapes)
            if meta.get("kind") != "swa":
                raise CheckpointError(f"The checkpoint {self.state_path!r} is not an SWA average. Point "
                                      "`state_path` to another file, or delete it to start a new average.")
        self._sum = [np.asarray(total, np.float64) for total in sums]
        self.n_averaged = int(meta["n_averaged"])
        self.averaged_epochs = [int(e) for e in meta["averaged_epochs"]]
        starts = meta.get("swa_lr_start")
        if self.swa_learning_rate is not None and isinstance(starts, list) and len(starts) == len(self._lr_handles):
            # The rate restored with the optimizer is an annealed one, not lr_0 (see _restore_learning_rates).
            self._swa_lr_start = [float(lr) for lr in starts]
            self._resumed_lr_start = True
        self._log("SWA: resumed an average of %d snapshots from %s.", self.n_averaged, self.state_path)

    # ------------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        _check_optimizer_keeps_weights(getattr(self.model, "optimizer", None))
        self._reset_state()
        self._training = True
        if self.swa_learning_rate is not None:
            self._lr_handles = control.learning_rate_handles(self.model)
        self._load_state()

    def _annealed_rate(self, start, epoch):
        t = 1.0 if self.anneal_epochs == 0 else min(1.0, (epoch - self.start_epoch + 1) / self.anneal_epochs)
        lr0, lr1 = start, self.swa_learning_rate
        if self.anneal_strategy == "linear":
            return (1.0 - t) * lr0 + t * lr1
        return lr1 + (lr0 - lr1) * (1.0 + math.cos(math.pi * t)) / 2.0

    def on_first_epoch_begin(self, epoch):
        """The average read from ``state_path`` must end before ``epoch``, this fit's first:
        otherwise it is not the interrupted run's (a finished run's, another trial's) and
        would replace this run's average. Raised before any step; nothing is changed."""
        if self.n_averaged and max(self.averaged_epochs) >= epoch:
            raise CheckpointError(
                f"The SWA state {self.state_path!r} averages epochs "
                f"{', '.join(str(e + 1) for e in self.averaged_epochs)}, but this fit starts at epoch "
                f"{epoch + 1}: it is not the average of the run being resumed (a finished run's, or "
                "another run's). Nothing was changed. Delete it, or point `state_path` to another "
                "file, to start a new average.")
        if not self.n_averaged and epoch > self.start_epoch:
            logger.warning(
                "SWA: this fit starts at epoch %d with no average of epochs %d to %d to resume "
                "(state_path=%r), so the average holds only this fit's epochs. To resume an "
                "interrupted run's average, give the run a `state_path`.",
                epoch + 1, self.start_epoch + 1, epoch, self.state_path)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self.swa_learning_rate is None or epoch < self.start_epoch:
            return
        if self._swa_lr_start is None:
            self._swa_lr_start = [handle.value() for handle in self._lr_handles]
        held_before = [to_float(handle.override_variable) if handle.held else None for handle in self._lr_handles]
        changed = [handle.begin_override(self._annealed_rate(start, epoch))
                   for handle, start in zip(self._lr_handles, self._swa_lr_start)]
        if any(changed):  # a schedule was replaced by the SWA rate's variable
            control.retrace(self.model)
        elif any(before is not None and to_float(handle.override_variable) != before
                 for handle, before in zip(self._lr_handles, held_before)):
            control.assigned_outside_state(self.model)  # JAX froze the held rate into its step

    def on_epoch_end(self, epoch, logs=None):
        due = epoch >= self.start_epoch and (epoch - self.start_epoch) % self.frequency == 0
        if due and epoch not in self.averaged_epochs:
            values = [np.asarray(keras.ops.convert_to_numpy(v), dtype=np.float64) for v in self._variables()]
            if self._sum is None:
                self._sum = values
            else:
                self._sum = [total + value for total, value in zip(self._sum, values)]
            self.n_averaged += 1
            self.averaged_epochs.append(int(epoch))
            if self.state_path:
                self._save_state()
        last = (self.params or {}).get("epochs")
        if last is not None and epoch == last - 1:
            self._finalize()

    def on_test_begin(self, logs=None):
        if self._training and self.swap_for_validation and not self._finalized and self.n_averaged:
            self._backup = [keras.ops.convert_to_numpy(v) for v in self._variables()]
            self._assign(self.averaged_weights())

    def on_test_end(self, logs=None):
        if self._backup is not None:
            self._assign(self._backup)
            self._backup = None

    def on_train_end(self, logs=None):
        self._finalize()
        self._training = False
        self._restore_learning_rates()

    def _restore_learning_rates(self):
        """Put back each optimizer's learning rate: its schedule, or its float ``lr_0``.

        In a run resumed from ``state_path`` the float rate found at the override's
        start was restored from a checkpoint taken while annealing; the original is
        the ``lr_0`` kept in the state file.
        """
        changed = [handle.end_override() for handle in self._lr_handles]
        if self._resumed_lr_start:
            for handle, start in zip(self._lr_handles, self._swa_lr_start):
                if not handle.is_schedule:
                    handle.set(start)
        self._lr_handles = []
        if any(changed):
            control.retrace(self.model)

    def _finalize(self):
        if self._finalized:
            return
        self._finalized = True
        averaged = self.averaged_weights()
        if averaged is None:
            logger.warning("SWA: no epoch was averaged (start_epoch=%d); the weights are unchanged.",
                           self.start_epoch)
            return
        self._assign(averaged)
        if _batch_norm_layers(self.model):
            if self.bn_data is None:
                logger.warning("SWA: the model has BatchNormalization layers but no `bn_data` was "
                               "given; their statistics belong to the last weights, not the average.")
            else:
                used = recompute_batch_norm_statistics(self.model, self.bn_data, self.bn_batch_size,
                                                       self.bn_steps)
                self._log("SWA: recomputed BatchNorm statistics over %d batches.", used)
        self._log("SWA: swapped in the average of %d snapshots (epochs %s).", self.n_averaged,
                  [e + 1 for e in self.averaged_epochs])

    def get_config(self):
        return {
            "start_epoch": self.start_epoch,
            "frequency": self.frequency,
            "swa_learning_rate": self.swa_learning_rate,
            "anneal_epochs": self.anneal_epochs,
            "anneal_strategy": self.anneal_strategy,
            "bn_batch_size": self.bn_batch_size,
            "bn_steps": self.bn_steps,
            "swap_for_validation": self.swap_for_validation,
            "state_path": self.state_path,
            "verbose": self.verbose,
        }
