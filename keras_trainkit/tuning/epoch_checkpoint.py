"""A trial's per-epoch checkpoint: the one place that reads and writes its files.

Every epoch end a tuner's trial replaces one file in its trial folder,
``checkpoint.npz``, in the one checkpoint format of
:mod:`keras_trainkit.utils.checkpoints` (an ``.npz`` with a JSON header,
written atomically). Its arrays are the model's variables (``model.variables``:
the weights and the layers' seed-generator states) followed by the optimizer's
variables and, when the trial's ``fit`` runs a
:class:`~keras_trainkit.training.Trainer`, the Trainer's own state (its gradient
transforms', its partial gradient sum, its count of skipped steps), as its own
checkpoints hold. Its metadata (``meta``) is the trial's :class:`ResumeState`:

* ``kind``: ``"tuner_trial"``, so no other checkpoint is taken for a trial's;
* ``trial_id`` and ``hyperparameters`` (``HyperParameters.get_config()``);
* ``execution`` and ``epoch``: the last epoch that ended (from 0);
* ``best_value``: the best objective value so far (or ``null``);
* ``reported``: whether the epochs reached the oracle;
* ``histories``: the results of the trial's finished executions;
* ``pruned_epoch``: ``epoch`` when the oracle pruned the trial at that epoch
  (a resumed search then ends the trial as pruned at once, without training
  it again), else ``null``. Checkpoints written before this field load as
  not pruned;
* ``learning_rate_scales``: the learning-rate schedules' scales
  (``control.learning_rate_scales``: ``ReduceLROnPlateau``'s reductions of a
  schedule, kept outside the optimizer's variables), or ``null`` (no Keras
  optimizer, or a checkpoint written before this field: nothing to restore);
* ``best_epoch``: the epoch whose weights the trial's best-weights file holds
  for this execution, or ``null``.

An epoch end is one transaction of three writes: the oracle's record of the
epoch, the best-weights file, and the checkpoint. The checkpoint is written
first to ``checkpoint.pending.npz`` (staged), then the epoch is reported and
the best weights are saved, and the staged file is renamed over
``checkpoint.npz`` (committed). A kill at any moment leaves the previous
complete checkpoint or the new one, and never a committed checkpoint of an
epoch the oracle has not recorded (a resumed trial would not report it).
A resumed search settles a staged file first
(:func:`settle_pending_checkpoint`): when the oracle recorded its epoch, the
kill came after the report, so it is committed, and the resumed trial saves the
best weights again from it when that epoch was the best (the kill may have
come before their save); otherwise it is dropped and the epoch is trained
again. The weights of a recorded epoch are therefore never lost: the model
``get_best_models`` loads scores what the oracle recorded.
A resumed search reads the state with :func:`read_resume_state`, which checks
the header and every entry's CRC without loading the arrays, and refuses (with
:class:`DamagedCheckpoint`) a file that is not a complete checkpoint of this
kind; :class:`EpochCheckpoint` then loads the arrays, which must match the
training state's variables in count and shapes.

Trial folders written by keras_trainkit before this format (``resume.json``
naming ``epoch_<k>.weights.h5``, or ``execution_<e>_epoch_<k>.weights.h5`` for
the second and later executions, written by ``model.save_weights``) are still
read and resumed, with the same checks; the next epoch end writes
``checkpoint.npz`` and removes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import h5py
import keras

from keras_trainkit.optimizers import control
from keras_trainkit.utils.checkpoints import (
    CheckpointError,
    assign_arrays,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    variable_arrays,
)
from keras_trainkit.utils.files import replace_atomically

CHECKPOINT_FILE = "checkpoint.npz"
PENDING_FILE = "checkpoint.pending.npz"
KIND = "tuner_trial"
LEGACY_RESUME_FILE = "resume.json"
_LEGACY_WEIGHTS = re.compile(r"^(execution_\d+_)?epoch_\d+\.weights\.h5$")


class DamagedCheckpoint(ValueError):
    """A checkpoint file that cannot be trusted; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class ResumeState:
    """What a trial's checkpoint records: where the trial stopped and what it was."""

    trial_id: str
    hyperparameters: dict  # ``HyperParameters.get_config()``
    execution: int
    epoch: int
    best_value: float | None = None
    reported: bool = False  # whether the epochs reached the oracle
    histories: list = field(default_factory=list)  # finished executions' results
    weights: str = CHECKPOINT_FILE  # the file inside the trial folder holding the arrays
    pruned_epoch: int | None = None  # ``epoch`` when the oracle pruned the trial there
    learning_rate_scales: list | None = None  # ``control.learning_rate_scales`` of the model
    best_epoch: int | None = None  # the epoch whose weights the best-weights file holds

    @property
    def values(self) -> dict:
        """The trial's hyperparameter values."""
        return dict(self.hyperparameters.get("values", {}))

    @property
    def legacy(self) -> bool:
        """Whether the state comes from the older ``resume.json`` format."""
        return self.weights != CHECKPOINT_FILE

    @property
    def state_file(self) -> str:
        """The file inside the trial folder this state was read from."""
        return LEGACY_RESUME_FILE if self.legacy else CHECKPOINT_FILE

    def meta(self) -> dict:
        """The checkpoint's metadata for this state."""
        return {"kind": KIND, "trial_id": self.trial_id, "hyperparameters": self.hyperparameters,
                "execution": self.execution, "epoch": self.epoch, "best_value": self.best_value,
                "reported": self.reported, "histories": self.histories,
                "pruned_epoch": self.pruned_epoch, "learning_rate_scales": self.learning_rate_scales,
                "best_epoch": self.best_epoch}


def _field(state: dict, name: str, kind, path: str, optional=False):
    value = state.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise DamagedCheckpoint(path, f"its {name!r} is {value!r}")
    return value


def _state_from(state: dict, path: str, weights: str) -> ResumeState:
    """A :class:`ResumeState` from checkpoint metadata, every field checked."""
    epoch = _field(state, "epoch", int, path)
    execution = _field(state, "execution", int, path)
    if epoch < 0 or execution < 0:
        raise DamagedCheckpoint(path, f"negative epoch or execution ({epoch}, {execution})")
    best = _field(state, "best_value", (int, float), path, optional=True)
    histories = _field(state, "histories", list, path)
    if len(histories) != execution or not all(isinstance(h, dict) for h in histories):
        raise DamagedCheckpoint(path, f"{len(histories)} finished executions before execution "
                                      f"{execution}")
    pruned_epoch = _field(state, "pruned_epoch", int, path, optional=True)
    if pruned_epoch not in (None, epoch):
        raise DamagedCheckpoint(path, f"it says epoch {epoch + 1} ended, but that the trial "
                                      f"was pruned at epoch {pruned_epoch + 1}")
    return ResumeState(trial_id=_field(state, "trial_id", str, path),
                       hyperparameters=_field(state, "hyperparameters", dict, path),
                       execution=execution, epoch=epoch,
                       best_value=None if best is None else float(best),
                       reported=_field(state, "reported", bool, path), histories=histories,
                       weights=weights, pruned_epoch=pruned_epoch,
                       learning_rate_scales=_field(state, "learning_rate_scales", list, path, optional=True),
                       best_epoch=_field(state, "best_epoch", int, path, optional=True))


def _read_legacy_state(path: str) -> ResumeState | None:
    """The state of an older ``resume.json``, or ``None`` when there is none."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise DamagedCheckpoint(path, f"not JSON ({error})") from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(path, "not a JSON object")
    weights = _field(state, "weights", str, path)
    if not _LEGACY_WEIGHTS.match(weights):
        raise DamagedCheckpoint(path, f"it names {weights!r}, not a weights file in its folder")
    return _state_from(state, path, weights)


def read_resume_state(folder: str) -> ResumeState | None:
    """The checkpoint state in ``folder``, or ``None`` when there is none.

    ``checkpoint.npz`` is read when it exists (its header and CRCs are checked,
    its arrays are not loaded), else an older ``resume.json``.

    Raises:
        DamagedCheckpoint: the file exists but is not a complete state of this
            kind (truncated, garbage, another kind of checkpoint, a field
            missing or of the wrong type, or an older ``resume.json`` naming a
            file outside the folder).
    """
    path = os.path.join(folder, CHECKPOINT_FILE)
    state = _read_state(path)
    if state is None:
        return _read_legacy_state(os.path.join(folder, LEGACY_RESUME_FILE))
    return state


def _read_state(path: str) -> ResumeState | None:
    """The state of the checkpoint file ``path`` (header and CRCs checked), or ``None``."""
    try:
        meta = read_checkpoint_meta(path)
    except CheckpointError as error:
        raise DamagedCheckpoint(path, f"it {error.problem}" if error.problem else str(error)) from None
    if meta is None:
        return None
    if meta.get("kind") != KIND:
        raise DamagedCheckpoint(path, f"it is not a tuner trial's checkpoint (its kind is "
                                      f"{meta.get('kind')!r}, not {KIND!r})")
    return _state_from(meta, path, CHECKPOINT_FILE)


def settle_pending_checkpoint(folder: str, recorded_epochs) -> str | None:
    """Commit or drop the checkpoint a kill left staged in ``folder`` (see the module
    docstring); returns a message for the search to print, or ``None``.

    Args:
        folder: the trial folder.
        recorded_epochs: ``recorded_epochs(execution)`` gives the epochs of that
            execution the oracle holds a value of.
    """
    path = os.path.join(folder, PENDING_FILE)
    try:
        state = _read_state(path)
    except DamagedCheckpoint as damage:
        where = set_aside(folder, [PENDING_FILE])
        return (f"The staged checkpoint {path!r} is not readable ({damage.reason}); set aside in "
                f"{where}; the trial resumes from its last committed checkpoint.")
    if state is None:
        return None
    if state.epoch in recorded_epochs(state.execution):  # the kill came after the report
        replace_atomically(path, os.path.join(folder, CHECKPOINT_FILE))
    else:
        os.remove(path)
    return None


def checkpoint_files(folder: str) -> list[str]:
    """The names of the trial checkpoint's files in ``folder`` (either format)."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder)
                  if name in (CHECKPOINT_FILE, PENDING_FILE, LEGACY_RESUME_FILE)
                  or _LEGACY_WEIGHTS.match(name))


def check_restorable(folder: str, state: ResumeState) -> None:
    """Raise :class:`DamagedCheckpoint` unless the arrays of ``state`` are readable.

    ``checkpoint.npz`` was checked whole by :func:`read_resume_state`; an older
    state's weights file is read here.
    """
    if state.legacy:
        check_weights_file(os.path.join(folder, state.weights))


def check_weights_file(path: str) -> None:
    """Raise :class:`DamagedCheckpoint` unless ``path`` is a readable HDF5 weights file
    (every dataset is read, so a truncated file is caught)."""
    if not os.path.isfile(path):
        raise DamagedCheckpoint(path, "the file is missing")
    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset)
                              else None)
    except Exception as error:  # h5py raises OSError, KeyError or RuntimeError
        raise DamagedCheckpoint(path, f"unreadable ({type(error).__name__}: {error})") from None


def set_aside(folder: str, names) -> str:
    """Move the files ``names`` of ``folder`` into a new ``folder/damaged_<n>/``; return it."""
    target = os.path.join(folder, f"damaged_{time.strftime('%Y%m%d-%H%M%S')}")
    suffix = 0
    while os.path.exists(target + (f"_{suffix}" if suffix else "")):
        suffix += 1
    target += f"_{suffix}" if suffix else ""
    os.makedirs(target)
    for name in names:
        source = os.path.join(folder, name)
        if os.path.exists(source):
            shutil.move(source, os.path.join(target, name))
    return target


def save_weights_atomically(model: keras.Model, path: str) -> None:
    """``model.save_weights(path)`` through a temporary file renamed over ``path``."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}.weights.h5")
    model.save_weights(tmp)
    if os.path.exists(tmp):  # a model may override save_weights to save nothing
        os.replace(tmp, path)


class EpochCheckpoint(keras.callbacks.Callback):
    """Write the model's training state (its and its optimizer's variables, and a
    running ``Trainer``'s own state) with the trial's state to
    ``checkpoint.npz`` at every epoch end; restore them at train begin when
    ``restore`` is true.

    Every epoch end is one transaction (see the module docstring): the
    checkpoint is staged, ``reporter`` and then ``best_epoch`` run their epoch
    end (they are driven by this callback, not passed to ``fit`` themselves),
    and the checkpoint is committed.

    Args:
        folder: the trial folder.
        restore: load the folder's checkpoint at train begin (the caller has
            checked it with :func:`read_resume_state` and
            :func:`check_restorable`); a checkpoint whose variables differ in
            count or shapes, or of another trial or execution, raises
            :class:`~keras_trainkit.utils.checkpoints.CheckpointError` naming the file.
        trial_id, hyperparameters: the trial, recorded in every state so a
            resumed search can tell that the checkpoint is this trial's.
        execution: the execution of the trial being trained.
        histories: the results of the trial's finished executions.
        best_epoch: the :class:`~keras_trainkit.tuning.trial_plan.BestEpochWeights`
            keeping the best epoch's weights; its ``best_value`` is recorded, so a
            resumed trial keeps its best, and so is the epoch it saved.
        reporter: the :class:`~keras_trainkit.tuning.trial_plan.EpochReporter`
            sending epochs to the oracle; whether it did is recorded, so a resumed
            search can check the state against the oracle, and so is a pruning
            decision (its ``stopped`` is ``"pruned"``), so a resumed search ends
            the trial as pruned.
        parent_pid: in a trial's own process, the search's process id: when the
            search has died, nothing more is written (the resumed search owns
            the folder) and training stops.
    """

    def __init__(self, folder: str, restore: bool = False, *, trial_id: str = "",
                 hyperparameters: dict | None = None, execution: int = 0, histories=(),
                 best_epoch=None, reporter=None, parent_pid: int | None = None):
        super().__init__()
        self.folder = folder
        self.restore = restore
        self.trial_id = str(trial_id)
        self.hyperparameters = dict(hyperparameters or {})
        self.execution = int(execution)
        self.histories = list(histories)
        self.best_epoch = best_epoch
        self.reporter = reporter
        self.parent_pid = parent_pid
        self._best_saved_at = None  # the epoch of this execution the best weights are from

    @property
    def path(self) -> str:
        """The checkpoint file, ``<folder>/checkpoint.npz``."""
        return os.path.join(self.folder, CHECKPOINT_FILE)

    @property
    def pending_path(self) -> str:
        """The staged checkpoint, ``<folder>/checkpoint.pending.npz``."""
        return os.path.join(self.folder, PENDING_FILE)

    def _driven(self) -> list:
        """The callbacks whose epoch end runs inside this one's: the reporter, then
        the best-weights saver."""
        return [callback for callback in (self.reporter, self.best_epoch) if callback is not None]

    def set_model(self, model):
        super().set_model(model)
        for callback in self._driven():
            callback.set_model(model)

    @staticmethod
    def last_epoch(folder: str) -> int | None:
        """The last completed epoch recorded in ``folder``, or ``None``."""
        try:
            state = read_resume_state(folder)
        except DamagedCheckpoint:
            return None
        if state is None or not os.path.exists(os.path.join(folder, state.weights)):
            return None
        return state.epoch

    def _variables(self) -> list:
        """What the checkpoint holds, in order: the model's training state
        (``control.training_state_variables``: under ``model.fit`` the model's variables,
        then the optimizer's, none when the model has no Keras optimizer, as KerasTuner's
        own test models; under a running ``Trainer`` also its transforms' state, partial
        gradient sum and skip count)."""
        optimizer = getattr(self.model, "optimizer", None)
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            return control.model_state_variables(self.model)
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return control.training_state_variables(self.model)

    def _learning_rate_scales(self) -> list | None:
        """``control.learning_rate_scales`` of the model (``None`` without a Keras optimizer)."""
        if not isinstance(getattr(self.model, "optimizer", None), keras.optimizers.Optimizer):
            return None
        return control.learning_rate_scales(self.model)

    def on_train_begin(self, logs=None):
        if not self.restore:
            return
        try:
            state = read_resume_state(self.folder)
        except DamagedCheckpoint as damage:
            raise CheckpointError(f"The checkpoint {damage.path!r} cannot be restored: "
                                  f"{damage.reason}") from None
        if state is None:
            raise CheckpointError(f"The checkpoint {self.path!r} to restore is missing.")
        path = os.path.join(self.folder, state.weights)
        if state.trial_id != self.trial_id or state.execution != self.execution:
            raise CheckpointError(
                f"The checkpoint {path!r} is execution {state.execution} of trial "
                f"{state.trial_id!r}, not execution {self.execution} of trial {self.trial_id!r}; "
                "it is not restored. Delete it to start the trial over.")
        variables = self._variables()
        if state.legacy:
            self.model.load_weights(path)
            return
        arrays, _, _ = load_checkpoint(path, expected_shapes=[v.shape for v in variables])
        if state.learning_rate_scales is not None:  # checked before anything is restored
            try:
                control.restore_learning_rate_scales(self.model, state.learning_rate_scales)
            except ValueError as error:
                raise CheckpointError(f"The checkpoint {path!r} cannot be restored: {error}") from None
        assign_arrays(variables, arrays, path)
        self._best_saved_at = state.best_epoch
        if self.best_epoch is not None and state.best_epoch == state.epoch:
            self.best_epoch.save()  # a kill may have come between the report and this save

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def on_epoch_end(self, epoch, logs=None):
        """Stage the checkpoint, report the epoch and save the best weights, commit."""
        if self._orphaned():
            self.model.stop_training = True
            return
        arrays = variable_arrays(self._variables())
        state = self._state_after(int(epoch), logs)
        save_checkpoint(self.pending_path, arrays, state.meta())
        for callback in self._driven():
            callback.on_epoch_end(epoch, logs)
        if getattr(self.reporter, "stopped", None) == "pruned":  # at this epoch's report
            state.pruned_epoch = int(epoch)
            save_checkpoint(self.pending_path, arrays, state.meta())
        replace_atomically(self.pending_path, self.path)
        self._best_saved_at = state.best_epoch
        self._remove_stale()

    def _state_after(self, epoch: int, logs) -> ResumeState:
        """The trial's state once ``epoch`` has been reported and its best weights saved."""
        best, best_epoch = None, self._best_saved_at
        if self.best_epoch is not None:
            best = self.best_epoch.best_value_after(logs)
            best_epoch = epoch if self.best_epoch.improves(logs) else best_epoch
        reported = self.reporter is not None and (self.reporter.reported
                                                  or self.reporter.will_report(epoch, logs))
        return ResumeState(
            trial_id=self.trial_id, hyperparameters=self.hyperparameters,
            execution=self.execution, epoch=epoch,
            best_value=float(best) if best is not None and abs(best) != float("inf") else None,
            reported=reported, histories=self.histories,
            learning_rate_scales=self._learning_rate_scales(), best_epoch=best_epoch)

    def _remove_stale(self) -> None:
        """Remove what a complete save makes stale: older-format files, a killed writer's temporary files."""
        for name in os.listdir(self.folder):
            stale = (name.startswith((CHECKPOINT_FILE + ".tmp-", PENDING_FILE + ".tmp-"))
                     and not name.endswith(f".tmp-{os.getpid()}"))
            if stale or name == LEGACY_RESUME_FILE or _LEGACY_WEIGHTS.match(name):
                try:
                    os.remove(os.path.join(self.folder, name))
                except FileNotFoundError:
                    pass


__all__ = [
    "CHECKPOINT_FILE",
    "DamagedCheckpoint",
    "EpochCheckpoint",
    "LEGACY_RESUME_FILE",
    "PENDING_FILE",
    "ResumeState",
    "check_restorable",
    "check_weights_file",
    "checkpoint_files",
    "read_resume_state",
    "save_weights_atomically",
    "set_aside",
    "settle_pending_checkpoint",
]
