"""``SpikeDetection``: find loss spikes, then stop, skip the batch or restore the last good state."""

from __future__ import annotations

import collections
import logging
import math
import os

import numpy as np

from keras_trainkit._compat.keras import loss_total_and_count
from keras_trainkit.callbacks._monitor import (
    TrackedBatchLoss,
    TrainkitCallback,
    check_optional_number,
    sync_model_state,
)
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control
from keras_trainkit.utils.checkpoints import CheckpointError, load_checkpoint, save_checkpoint, variable_arrays
from keras_trainkit.utils.validation import check_bool, check_condition, check_in, check_positive, check_type

logger = logging.getLogger(__name__)

POLICIES = ("stop", "skip", "restore")
_RECORD_KIND = "SpikeDetection"


def is_spike(loss, last_good, recent, atol=None, rtol=2.0):
    """Whether the batch loss ``loss`` is a spike (Lightning's ``SpikeDetection`` rule, mode "min").

    A non-finite loss is a spike. A loss ``<= last_good`` (the last
    non-spiking loss) is not. Otherwise, with ``mean`` the mean of ``recent``
    non-spiking losses and ``rise = loss - mean``, it is a spike when
    ``rise >= atol`` (or ``atol`` is ``None``) and ``rise >= rtol * |mean|``
    (or ``rtol`` is ``None``). Lightning compares ``|loss - mean|``, so there a
    loss far *below* the mean can count as a spike; here it cannot.
    """
    if not math.isfinite(loss):
        return True
    if loss <= last_good:
        return False
    mean = float(np.mean(recent))
    rise = loss - mean
    return (atol is None or rise >= atol) and (rtol is None or rise >= rtol * abs(mean))


class _StateCopy:
    """A host copy of the model's training state, put back on demand.

    The model's variables and its optimizer's (slots, step counter), and in
    the ``Trainer`` also its own gradient transforms' state, accumulated
    gradient and skip counter (``control.training_state_variables``), but not
    a float learning rate's variable: that rate is what the callbacks that
    control it set (``ReduceLROnPlateau``, ``LearningRateScheduler``,
    ``HyperparameterScheduler``, ``SWA``), whose own state an undo does not
    roll back (a schedule follows the restored step counter).
    """

    def __init__(self, model):
        sync_model_state(model)
        self.model = model
        rates = {id(handle.variable) for handle in control.learning_rate_handles(model) if not handle.is_schedule}
        self.variables = [v for v in control.training_state_variables(model) if id(v) not in rates]
        self.arrays = variable_arrays(self.variables)

    def restore(self):
        sync_model_state(self.model)  # JAX: the next batch then starts from the restored values
        for variable, array in zip(self.variables, self.arrays):
            variable.assign(array)


@register
class SpikeDetection(TrainkitCallback):
    """Detect loss spikes during training and stop, skip the spiking batch, or restore the last good state.

    The batch loss ``L`` of each train step is read from the model's loss
    tracker (exact for any batch size; with ``steps_per_execution=k`` a
    "batch" is the ``k`` steps of one call). Rule (Lightning's
    ``SpikeDetection``, mode ``"min"``; see :func:`is_spike`): with ``mean``
    the mean of the last ``window`` non-spiking batch losses and ``last`` the
    last of them, ``L`` is a spike when it is NaN/Inf, or when ``L > last``
    and ``L - mean >= atol`` (if set) and ``L - mean >= rtol * |mean|`` (if
    set). Detection of finite spikes starts once ``warmup`` non-spiking losses
    were seen (over the whole run; Lightning counts the batch index); a NaN/Inf
    loss is a spike from the first batch on (it needs no window, and an update
    left in place would make every later loss NaN, so that the warmup never
    ends). Spiking losses never enter the window. Lightning also records the
    batch before a spike; here only the spiking batch is recorded
    (``"restore"`` undoes the batches before it).

    Policies:

    * ``"stop"``: stop training after the spiking batch (``model.stop_training``).
    * ``"skip"``: undo the spiking batch: the weights, the model's other
      variables and the optimizer's variables (slots and step counter) are put
      back to their values before the batch, so it is as if it had not been
      trained on (its data is consumed). Costs one host copy of the model and
      optimizer variables per batch. In the ``Trainer`` the copy also holds
      its own state (its ``gradient_transforms``, the partial gradient sum of
      its ``gradient_accumulation_steps``, its count of skipped non-finite
      steps), so a skipped batch leaves nothing in the accumulated gradient.
    * ``"restore"``: roll back to the last good state, a host copy of the
      same variables taken after every ``snapshot_every``-th non-spiking batch
      (and at the start of training): the spike and the batches just before it
      are undone, as PaLM restarts from a checkpoint ~100 steps before a spike.

    An undo leaves a float learning rate as it is: the callbacks that set it
    (``ReduceLROnPlateau``, Keras's ``LearningRateScheduler``,
    ``HyperparameterScheduler``, ``SWA``) are not rolled back, and a rate put
    back from before their last change would train on at a rate none of them
    chose. A learning-rate schedule follows the restored step counter.

    The callback builds the optimizer at ``on_train_begin`` (``fit`` would in
    its first step), so every copy holds its slots: an undo of the first
    batches puts them back too.

    After ``max_consecutive`` spikes in a row training is stopped whatever the
    policy (the loss is not coming back). Each spike is recorded in
    :attr:`spikes` as ``{"epoch", "step", "loss"}`` and logged: batch logs get
    ``spike`` (1.0 or 0.0), epoch logs ``spikes`` (the epoch's count). A batch
    that is undone is also taken out of the epoch's ``loss`` (the loss
    tracker's sum and count go back to their values before it, so a NaN
    batch does not make the rest of the epoch's loss NaN); other compiled
    metrics keep it.

    Resume: with ``state_path`` (a ``.npz`` file in the one checkpoint format
    of ``keras_trainkit.utils.checkpoints``) the record and the window are saved
    after every spike and epoch, and loaded at the start of the next ``fit``;
    with ``skip_recorded`` a resumed run then undoes the update of every
    recorded ``(epoch, step)`` as ``"skip"`` does, without looking at its loss.
    This needs the same data order (``shuffle=False``, or the Trainer's
    ordered resume) and a run resumed from a state before the spiking batch
    (a checkpoint or ``initial_epoch`` from before it).

    Args:
        policy: ``"stop"``, ``"skip"`` or ``"restore"``.
        window: how many recent non-spiking batch losses the mean covers (>= 1).
        warmup: non-spiking batches before detection starts (>= 1).
        atol: the least absolute rise over the mean that is a spike (> 0), or ``None``.
        rtol: the least rise over the mean relative to ``|mean|`` (> 0), or
            ``None``; at least one of ``atol`` and ``rtol`` must be set.
        snapshot_every: with ``"restore"``, keep the state after every this
            many non-spiking batches (>= 1).
        max_consecutive: spikes in a row after which training stops (>= 1), or ``None``.
        state_path: a ``.npz`` file for the record and the window, or ``None``.
        skip_recorded: in a run that loaded a record, undo the recorded batches.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1), "mse")
        >>> y = np.ones(32); y[20:24] = 1e3  # the sixth batch spikes
        >>> spikes = SpikeDetection(policy="skip", warmup=2)
        >>> _ = model.fit(np.ones((32, 2)), y, batch_size=4, shuffle=False, verbose=0, callbacks=[spikes])
        >>> [(s["epoch"], s["step"]) for s in spikes.spikes]
        [(0, 5)]

    References: Lightning's ``lightning.fabric.utilities.spike.SpikeDetection``
    (the rule and the record of spiking batches); Chowdhery et al., "PaLM:
    Scaling Language Modeling with Pathways", 2022, Sec. 5.1 (roll back ~100
    steps before a spike and skip the batches around it).
    """

    def __init__(self, policy="stop", window=10, warmup=1, atol=None, rtol=2.0, snapshot_every=100,
                 max_consecutive=10, state_path=None, skip_recorded=True):
        super().__init__()
        self.policy = check_in("policy", policy, POLICIES)
        self.window = int(check_positive("window", window, integer=True))
        self.warmup = int(check_positive("warmup", warmup, integer=True))
        self.atol = check_optional_number("atol", atol, minimum=0.0, min_inclusive=False)
        self.rtol = check_optional_number("rtol", rtol, minimum=0.0, min_inclusive=False)
        check_condition("rtol", rtol, atol is not None or rtol is not None,
                        "must be set when `atol` is None (with both None every rise of the loss is a spike)")
        self.snapshot_every = int(check_positive("snapshot_every", snapshot_every, integer=True))
        if max_consecutive is not None:
            max_consecutive = int(check_positive("max_consecutive", max_consecutive, integer=True))
        self.max_consecutive = max_consecutive
        if state_path is not None:
            check_type("state_path", state_path, (str, os.PathLike))
            check_condition("state_path", state_path, str(state_path).endswith(".npz"), "must end in '.npz'")
            state_path = os.fspath(state_path)
        self.state_path = state_path
        self.skip_recorded = check_bool("skip_recorded", skip_recorded)
        self._reset_state()

    def _reset_state(self):
        self.spikes = []
        self._recent = collections.deque(maxlen=self.window)
        self._good_batches = 0
        self._consecutive = 0
        self._to_skip = set()
        self._epoch = 0
        self._epoch_spikes = 0
        self._loss = TrackedBatchLoss()
        self._before_batch = None
        self._call_begin = 0
        self._good_state = None
        self._last_good_loss = math.inf

    # ------------------------------------------------------------------ record
    def _load_record(self):
        loaded = load_checkpoint(self.state_path) if self.state_path else None
        if loaded is None:
            return
        arrays, meta, _ = loaded
        if meta.get("kind") != _RECORD_KIND or len(arrays) != 1 or not isinstance(meta.get("spikes"), list):
            raise CheckpointError(f"The checkpoint {self.state_path!r} is not a SpikeDetection record. "
                                  "Point `state_path` to another file.")
        self.spikes = [dict(s) for s in meta["spikes"]]
        self._recent.extend(float(x) for x in arrays[0])
        self._good_batches = int(meta.get("good_batches", 0))
        self._last_good_loss = float(meta.get("last_good_loss", math.inf))
        if self.skip_recorded:
            self._to_skip = {(int(s["epoch"]), int(s["step"])) for s in self.spikes}

    def _save_record(self):
        if self.state_path:
            meta = {"kind": _RECORD_KIND, "spikes": self.spikes, "good_batches": self._good_batches,
                    "last_good_loss": self._last_good_loss}
            save_checkpoint(self.state_path, [np.asarray(self._recent, "float64")], meta)

    # ------------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        self._reset_state()
        self._load_record()
        if loss_total_and_count(self.model) is None:
            raise ValueError("SpikeDetection needs a compiled model (its loss tracker gives the batch loss). "
                             "Call model.compile(...) before fit.")
        # Built now, not in fit's first step: every copy must hold the optimizer's slots, or an
        # undo before a copy that has them leaves the undone batches' (a NaN's) values in them.
        control.build_optimizer(self.model)
        if self.policy == "restore":
            self._good_state = _StateCopy(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = int(epoch)
        self._epoch_spikes = 0
        self._loss.begin_epoch()

    def _detecting(self):
        return self._good_batches >= self.warmup

    def _recorded_ahead(self, batch):
        """Whether a recorded spiking step of this epoch is at ``batch`` or later (not yet undone)."""
        return any(epoch == self._epoch and step >= batch for epoch, step in self._to_skip)

    def _recorded_in_call(self, last):
        """Whether a recorded spiking step of this epoch lies in the call of steps ``_call_begin..last``.

        With ``steps_per_execution=k`` Keras passes the call's first step to
        ``on_train_batch_begin`` and its last to ``on_train_batch_end``; the
        record holds the last step of the spiking call.
        """
        return any(epoch == self._epoch and self._call_begin <= step <= last for epoch, step in self._to_skip)

    def on_train_batch_begin(self, batch, logs=None):
        self._call_begin = int(batch)
        # a non-finite loss is a spike from the first batch on: "skip" needs the state before every batch
        if self._recorded_ahead(int(batch)) or self.policy == "skip":
            self._before_batch = _StateCopy(self.model)
        else:
            self._before_batch = None

    def _batch_loss(self):
        """The call's loss from the loss tracker (exact for any batch size; see ``TrackedBatchLoss``)."""
        loss = self._loss.read(self.model)
        if loss is None:
            raise ValueError(
                "SpikeDetection reads the batch loss from the model's loss tracker, which this "
                "model's train_step did not update (a custom train_step must add its loss to it, "
                "as Keras's does: update_state(loss, sample_weight=batch_size) on the metric named "
                f"'loss'); without it no spike can be detected. Received: model={self.model.name!r}"
            )
        return loss

    def _undo(self, state, totals_before):
        """Put ``state`` back and take the batch out of the epoch's loss (a NaN must not stay in its sum)."""
        state.restore()
        self._loss.take_back(self.model, totals_before)

    def on_train_batch_end(self, batch, logs=None):
        totals_before = self._loss.totals
        loss = self._batch_loss()
        position = (self._epoch, int(batch))
        if self._recorded_in_call(int(batch)):
            self._undo(self._before_batch, totals_before)
            logger.info("SpikeDetection: skipped the recorded spiking batch %s.", position)
            spiked = False
        else:
            # a NaN/Inf needs no window: during the warmup it is a spike too (else its update stays,
            # the weights turn NaN, no loss is finite again and detection never starts)
            spiked = not math.isfinite(loss) or (
                self._detecting() and is_spike(loss, self._last_good_loss, self._recent, self.atol, self.rtol))
            if spiked:
                self._on_spike(position, loss, totals_before)
            elif math.isfinite(loss):
                self._on_good_batch(loss)
        self._before_batch = None
        if logs is not None:
            logs["spike"] = 1.0 if spiked else 0.0

    def _on_good_batch(self, loss):
        self._recent.append(loss)
        self._last_good_loss = loss
        self._good_batches += 1
        self._consecutive = 0
        if self.policy == "restore" and self._good_batches % self.snapshot_every == 0:
            self._good_state = _StateCopy(self.model)

    def _on_spike(self, position, loss, totals_before):
        epoch, step = position
        self.spikes.append({"epoch": epoch, "step": step, "loss": loss})
        self._epoch_spikes += 1
        self._consecutive += 1
        if self.policy == "skip":
            self._undo(self._before_batch, totals_before)
        elif self.policy == "restore":
            self._undo(self._good_state, totals_before)
        exhausted = self.max_consecutive is not None and self._consecutive >= self.max_consecutive
        if self.policy == "stop" or exhausted:
            self._stop()
        logger.warning(
            "SpikeDetection: loss spike at epoch %d, step %d (loss %.6g, mean of the last %d batches %.6g); %s.",
            epoch, step, loss, len(self._recent), float(np.mean(self._recent)) if self._recent else math.nan,
            "training stopped" if self.model.stop_training else
            {"skip": "the batch was undone", "restore": "the last good state was restored"}[self.policy],
        )
        self._save_record()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["spikes"] = float(self._epoch_spikes)
        self._save_record()

    def on_train_end(self, logs=None):
        self._save_record()
        self._before_batch = None
        self._good_state = None

    def get_config(self):
        return {
            "policy": self.policy,
            "window": self.window,
            "warmup": self.warmup,
            "atol": self.atol,
            "rtol": self.rtol,
            "snapshot_every": self.snapshot_every,
            "max_consecutive": self.max_consecutive,
            "state_path": self.state_path,
            "skip_recorded": self.skip_recorded,
        }
