"""A trial's per-epoch checkpoint: the one place that reads and writes its files.

Every epoch a tuner's trial writes, into its trial folder,

* ``epoch_<k>.weights.h5`` (``execution_<e>_epoch_<k>.weights.h5`` for the
  second and later executions of a trial): the model's weights and the
  optimizer's state after epoch ``k``, and then
* ``resume.json``, replaced atomically to name that file, with the trial's id
  and hyperparameters, the execution and epoch, the best objective value so
  far, whether the epochs reached the oracle, and the histories of the
  trial's finished executions.

The weights file is complete before ``resume.json`` names it, so a kill at any
moment leaves the previous checkpoint or the new one, never a part. A resumed
search reads the state with :func:`read_resume_state`, which refuses (with
:class:`DamagedCheckpoint`) a file that is not a checkpoint of this kind, and
checks with :func:`check_weights_file` that the weights are readable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import h5py
import keras

from keras_trainkit.utils.files import write_atomically

RESUME_FILE = "resume.json"


class DamagedCheckpoint(ValueError):
    """A checkpoint file that cannot be trusted; ``path`` names it, ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class ResumeState:
    """What ``resume.json`` records: where a trial stopped and what it was."""

    trial_id: str
    hyperparameters: dict  # ``HyperParameters.get_config()``
    execution: int
    epoch: int
    weights: str  # a file name inside the trial folder
    best_value: float | None = None
    reported: bool = False  # whether the epochs reached the oracle
    histories: list = field(default_factory=list)  # finished executions' History.history

    @property
    def values(self) -> dict:
        """The trial's hyperparameter values."""
        return dict(self.hyperparameters.get("values", {}))


def weights_file_name(execution: int, epoch: int) -> str:
    """The file an execution's epoch is saved to (``epoch_<k>.weights.h5`` for the first)."""
    prefix = f"execution_{execution}_" if execution else ""
    return f"{prefix}epoch_{epoch}.weights.h5"


def _field(state: dict, name: str, kind, path: str, optional=False):
    value = state.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise DamagedCheckpoint(path, f"its {name!r} is {value!r}")
    return value


def read_resume_state(folder: str) -> ResumeState | None:
    """The checkpoint state in ``folder``, or ``None`` when there is none.

    Raises:
        DamagedCheckpoint: ``resume.json`` exists but is not a complete state of
            this format (truncated, garbage, written by an older version, or
            naming a file outside the folder).
    """
    path = os.path.join(folder, RESUME_FILE)
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
    if os.path.basename(weights) != weights or not weights.endswith(".weights.h5"):
        raise DamagedCheckpoint(path, f"it names {weights!r}, not a weights file in its folder")
    epoch = _field(state, "epoch", int, path)
    execution = _field(state, "execution", int, path)
    if epoch < 0 or execution < 0:
        raise DamagedCheckpoint(path, f"negative epoch or execution ({epoch}, {execution})")
    best = _field(state, "best_value", (int, float), path, optional=True)
    histories = _field(state, "histories", list, path)
    if len(histories) != execution or not all(isinstance(h, dict) for h in histories):
        raise DamagedCheckpoint(path, f"{len(histories)} finished executions before execution "
                                      f"{execution}")
    return ResumeState(trial_id=_field(state, "trial_id", str, path),
                       hyperparameters=_field(state, "hyperparameters", dict, path),
                       execution=execution, epoch=epoch, weights=weights,
                       best_value=None if best is None else float(best),
                       reported=_field(state, "reported", bool, path), histories=histories)


def write_resume_state(folder: str, state: ResumeState) -> None:
    """Replace ``resume.json`` in ``folder`` atomically with ``state``."""
    write_atomically(os.path.join(folder, RESUME_FILE), json.dumps(asdict(state)).encode())


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
    """Write weights and optimizer state atomically at every epoch end; restore them
    at train begin when ``restore`` is true.

    Args:
        folder: the trial folder.
        restore: load the checkpoint named by ``resume.json`` at train begin
            (the caller has checked it with :func:`read_resume_state` and
            :func:`check_weights_file`).
        trial_id, hyperparameters: the trial, recorded in every state so a
            resumed search can tell that the checkpoint is this trial's.
        execution: the execution of the trial being trained.
        histories: the ``History.history`` of the trial's finished executions.
        best_epoch: the callback keeping the best epoch's weights; its
            ``best_value`` is recorded, so a resumed trial keeps its best.
        reporter: the callback sending epochs to the oracle; whether it did is
            recorded, so a resumed search can check the state against the oracle.
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

    def on_train_begin(self, logs=None):
        if not self.restore:
            return
        state = read_resume_state(self.folder)
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.folder, state.weights))

    def _orphaned(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def on_epoch_end(self, epoch, logs=None):
        if self._orphaned():
            self.model.stop_training = True
            return
        name = weights_file_name(self.execution, epoch)
        save_weights_atomically(self.model, os.path.join(self.folder, name))
        try:
            previous = read_resume_state(self.folder)
        except DamagedCheckpoint:
            previous = None
        best = getattr(self.best_epoch, "best_value", None)
        write_resume_state(self.folder, ResumeState(
            trial_id=self.trial_id, hyperparameters=self.hyperparameters,
            execution=self.execution, epoch=int(epoch), weights=name,
            best_value=float(best) if best is not None and abs(best) != float("inf") else None,
            reported=bool(getattr(self.reporter, "reported", False)),
            histories=self.histories))
        if previous is not None and previous.weights != name:
            try:
                os.remove(os.path.join(self.folder, previous.weights))
            except FileNotFoundError:
                pass


__all__ = [
    "DamagedCheckpoint",
    "EpochCheckpoint",
    "RESUME_FILE",
    "ResumeState",
    "check_weights_file",
    "read_resume_state",
    "save_weights_atomically",
    "set_aside",
    "weights_file_name",
    "write_resume_state",
]
