"""The Trainer's crash-safe resume: what a checkpoint holds, when it is written, how it comes back.

A checkpoint (one file, ``<checkpoint_dir>/checkpoint.npz``, in the format of
:mod:`keras_trainkit.utils.checkpoints`, written atomically) holds the model's
variables (weights and the layers' seed-generator states), the optimizer's and
the gradient transforms' variables, the Trainer's own counters and gradient
accumulators, and metadata: the learning-rate schedules' scales
(``control.learning_rate_scales``: ``ReduceLROnPlateau``'s reductions of a
schedule, kept outside the optimizer's variables), the epoch and step it was
written at, the seed of the array order, and what the run was (array or
dataset inputs, batch size, steps per epoch, a fingerprint of the data). A resume with other data, another
batch size or a position the run cannot have reached is refused with a message
that says what differs.

A ``tf.data.Dataset`` input is resumed through its random state
(:class:`DatasetCursor`): TensorFlow's own iterator checkpoint
(``tf.train.Checkpoint(iterator=...)``) of an iterator that was never pulled
holds the seeds and the seed-generator counts of every random op in the
pipeline (``shuffle`` with ``reshuffle_each_iteration``, ``Dataset.random``,
...). Restored before an epoch's iterator is made, it makes that iterator
yield the order the uninterrupted run saw; the Trainer then skips the batches
already done. The state holds no element data (about 170 bytes per slot of a
shuffle buffer) and is stored inside the checkpoint file.

Folders written by keras_trainkit 0.1 (``manifest.json`` naming a
``ckpt-<epoch>-<step>.npz``) are still read, with the same checks; the next
save writes the new format and removes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile

import numpy as np
import tensorflow as tf

from keras_trainkit.optimizers import control
from keras_trainkit.training.epoch_plan import Position
from keras_trainkit.utils.checkpoints import (
    CheckpointError,
    assign_arrays,
    load_checkpoint,
    save_checkpoint,
    variable_arrays,
)
from keras_trainkit.utils.variables import variable_path

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.npz"
_LEGACY_MANIFEST = "manifest.json"
_LEGACY_FILE = re.compile(r"^ckpt-\d{6}-\d{9}\.npz$")
_UNIQUE_SUFFIX = re.compile(r"_\d+(?=$|[/_])")


def data_fingerprint(x, y=None, sample_weight=None) -> str:
    """A short hash of array inputs: shapes, dtypes and up to 256 evenly spaced examples."""
    digest = hashlib.sha256()
    for array in tf.nest.flatten((x, y, sample_weight)):
        if array is None:
            continue
        array = np.asarray(array)
        digest.update(f"{array.shape}{array.dtype.str}".encode())
        if len(array):
            picks = np.unique(np.linspace(0, len(array) - 1, min(len(array), 256)).astype(np.int64))
            digest.update(np.ascontiguousarray(array[picks]).tobytes())
    return digest.hexdigest()[:16]


def variable_names(variables) -> list:
    """What each variable is, as a checkpoint records it: its Keras path (a ``tf.Variable``'s
    name), with the ``_<n>`` suffixes that Keras adds to make names unique removed, so a
    script rerun (or a model built second in one process) gives the same names."""
    return [_UNIQUE_SUFFIX.sub("", variable_path(variable)) for variable in variables]


def dataset_fingerprint(dataset) -> str:
    """A short hash of a dataset's element spec and cardinality (its data are not read)."""
    text = f"{dataset.element_spec}{int(dataset.cardinality())}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpointer:
    """Writes and restores the Trainer's checkpoints in ``directory``.

    Args:
        directory: the checkpoint folder.
        variables: a callable returning the variables to save, in a fixed order.
        run: what identifies the run: ``{"inputs": "arrays"|"dataset",
            "batch_size": ..., "data": fingerprint, "steps_per_epoch": int|None}``.
        seed: the seed of the array order (``None``: drawn once and saved).
        cursor: a :class:`DatasetCursor` for a dataset input, else ``None``.
    """

    def __init__(self, directory, variables, run: dict, seed=None, cursor=None, model=None):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, CHECKPOINT_FILE)
        self._variables = variables
        self.model = model  # whose learning-rate scales are saved beside the variables
        self.run = json.loads(json.dumps(run))  # compared with what a saved header holds
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        self.cursor = cursor
        self.resumed = None  # what a resume restored, in words

    def restore(self, initial_epoch: int):
        """Load the checkpoint if there is one; returns ``(epoch, step, position)`` to start
        from (``position``: the :class:`~keras_trainkit.training.epoch_plan.Position` of the
        data; a checkpoint of a run without ``steps_per_epoch`` is at its epoch's pass)."""
        loaded = self._load()
        if loaded is None:
            return initial_epoch, 0, Position(initial_epoch, 0)
        arrays, meta, blobs = loaded
        self._check_run(meta)
        self._restore_learning_rate_scales(meta.get("learning_rate_scales"))  # refused: nothing restored
        assign_arrays(self._variables(), arrays, self._shown_path())
        if self.cursor is not None:
            self.cursor.restore(blobs)
        self.seed = int(meta["seed"])
        epoch, step = int(meta["epoch"]), int(meta["step"])
        self.resumed = f"Resumed from {self.directory} at epoch {epoch + 1}, step {step}."
        logger.info(self.resumed)
        position = Position(meta["pass"], meta["pass_step"]) if "pass" in meta else Position(epoch, 0)
        return epoch, step, position

    def save(self, epoch: int, step: int, position) -> None:
        """Write the checkpoint of ``(epoch, step)`` (step 0: the epoch's start).

        ``position`` (the plan's :class:`~keras_trainkit.training.epoch_plan.Position`: the
        pass and the batches earlier epochs drew from it) is saved with a ``steps_per_epoch``
        run; a dataset's random state is the one its pass started from, or the current one
        where the next epoch starts a new pass.
        """
        blobs = None
        at_new_pass = step == 0 and position.pass_step == 0
        if self.cursor is not None:
            blobs = self.cursor.state() if at_new_pass else self.cursor.epoch_state
        variables = self._variables()
        meta = {"epoch": int(epoch), "step": int(step), "seed": int(self.seed), **self.run,
                "variables": variable_names(variables)}
        if self.run.get("steps_per_epoch"):
            meta.update({"pass": int(position.pass_index), "pass_step": int(position.pass_step)})
        if self.model is not None:
            meta["learning_rate_scales"] = control.learning_rate_scales(self.model)
        save_checkpoint(self.path, variable_arrays(variables), meta, blobs=blobs)
        self._remove_legacy()

    def _restore_learning_rate_scales(self, scales) -> None:
        """Put back the saved scales (none in a checkpoint written before they were saved)."""
        if self.model is None:
            return
        try:
            control.restore_learning_rate_scales(self.model, scales)
        except ValueError as error:
            raise CheckpointError(f"The checkpoint {self._shown_path()!r} has learning-rate scales that do "
                                  f"not fit this optimizer ({error}). Delete it to start over.") from None

    # ------------------------------------------------------------------ checks
    def _shown_path(self):
        return self.path if os.path.exists(self.path) else os.path.join(self.directory, _LEGACY_MANIFEST)

    def _check_run(self, meta) -> None:
        shown = self._shown_path()
        for key in ("epoch", "step", "seed") + (("pass", "pass_step") if "pass" in meta else ()):
            if not isinstance(meta.get(key), int) or isinstance(meta.get(key), bool) or meta[key] < 0:
                raise CheckpointError(f"The checkpoint {shown!r} has no valid `{key}` ({meta.get(key)!r}). "
                                      "Delete it to start over.")
        if "inputs" in meta and meta["inputs"] != self.run["inputs"]:
            raise CheckpointError(
                f"The checkpoint {shown!r} was written for {meta['inputs'][:-1]} inputs and this fit has "
                f"{self.run['inputs'][:-1]} inputs. Use a new folder or the same script.")
        for key, what in (("batch_size", "batch size"), ("data", "data"), ("steps_per_epoch", "steps per epoch")):
            if key in meta and meta[key] != self.run.get(key):
                raise CheckpointError(
                    f"The checkpoint {shown!r} was written for another run: its {what} was "
                    f"{meta[key]!r}, this fit's is {self.run.get(key)!r}. Resume with the same data "
                    "and arguments, or use a new folder.")
        self._check_variables(meta.get("variables"), shown)
        steps = self.run.get("steps")
        if steps is not None and meta["step"] >= steps:
            raise CheckpointError(f"The checkpoint {shown!r} is at step {meta['step']} of an epoch of "
                                  f"{steps} steps, which this run cannot have reached. Delete it to start over.")

    def _check_variables(self, saved, shown) -> None:
        """Refuse a checkpoint whose variables are another model's or optimizer's (same shapes,
        other names: an SGD momentum is no RMSprop velocity). Older checkpoints hold no names."""
        if saved is None:
            return
        if not isinstance(saved, list) or not all(isinstance(name, str) for name in saved):
            raise CheckpointError(f"The checkpoint {shown!r} has no valid `variables` list. Delete it to "
                                  "start over.")
        current = variable_names(self._variables())
        if saved == current:
            return
        index = next((i for i, (a, b) in enumerate(zip(saved, current)) if a != b), min(len(saved), len(current)))
        theirs = saved[index] if index < len(saved) else "nothing"
        ours = current[index] if index < len(current) else "nothing"
        raise CheckpointError(
            f"The checkpoint {shown!r} was written for another model or optimizer: its variable {index} is "
            f"{theirs!r}, this fit's is {ours!r}. Nothing was restored. Use a new folder, or the script, "
            "model and optimizer that wrote it.")

    # ------------------------------------------------------------------ files
    def _load(self):
        if os.path.exists(self.path):
            return load_checkpoint(self.path, expected_shapes=[v.shape for v in self._variables()])
        return self._load_legacy()

    def _legacy_files(self):
        if not os.path.isdir(self.directory):
            return []
        return [name for name in os.listdir(self.directory) if _LEGACY_FILE.match(name)]

    def _load_legacy(self):
        manifest_path = os.path.join(self.directory, _LEGACY_MANIFEST)
        if not os.path.exists(manifest_path):
            if self._legacy_files():
                raise CheckpointError(
                    f"The folder {self.directory!r} holds checkpoint data of keras_trainkit 0.1 "
                    f"({', '.join(sorted(self._legacy_files()))}) without its {_LEGACY_MANIFEST}. "
                    "Restore the manifest, or delete the folder to start over.")
            return None
        try:
            with open(manifest_path, "rb") as handle:
                manifest = json.loads(handle.read().decode("utf-8"))
            name, count, size = manifest["checkpoint"], int(manifest["arrays"]), int(manifest["bytes"])
        except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError):
            raise CheckpointError(f"The checkpoint manifest {manifest_path!r} is damaged. Delete the folder "
                                  "to start over.") from None
        if not isinstance(name, str) or not _LEGACY_FILE.match(name):
            raise CheckpointError(f"The checkpoint manifest {manifest_path!r} names {name!r}, not a checkpoint "
                                  "file in its own folder; it is not read. Delete the folder to start over.")
        return _read_legacy_archive(os.path.join(self.directory, name), manifest, count, size)

    def _remove_legacy(self) -> None:
        """Remove what a complete save makes stale: 0.1-format files, a killed writer's temporary files."""
        stale = [name for name in os.listdir(self.directory) if name.startswith(CHECKPOINT_FILE + ".tmp-")
                 and not name.endswith(f".tmp-{os.getpid()}")]
        for name in [_LEGACY_MANIFEST, *self._legacy_files(), *stale]:
            try:
                os.remove(os.path.join(self.directory, name))
            except FileNotFoundError:
                pass


def _read_legacy_archive(path, manifest, count, size):
    """Arrays, metadata and dataset state of a keras_trainkit 0.1 checkpoint file."""
    actual = os.path.getsize(path) if os.path.exists(path) else -1
    if actual != size:
        raise CheckpointError(f"The checkpoint {path!r} is missing or incomplete ({actual} of {size} bytes). "
                              "Delete its folder to start over.")
    suffixes = manifest.get("data_state")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = [archive[f"arr_{i}"] for i in range(count)]
            blobs = {} if suffixes is None else {
                str(s): archive[f"data_state_{i}"].tobytes() for i, s in enumerate(suffixes)}
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CheckpointError(f"The checkpoint {path!r} is damaged ({type(error).__name__}). Delete its "
                              "folder to start over.") from None
    meta = {key: manifest.get(key) for key in ("epoch", "step", "seed")}
    meta["inputs"] = "arrays" if suffixes is None else "dataset"
    return arrays, meta, blobs


class DatasetCursor:
    """The resumable position of a ``tf.data.Dataset``: its random state before each epoch.

    The Trainer makes one fresh iterator per epoch, and each new iterator draws
    its shuffle seeds from generators inside the dataset (so every epoch has
    its own order). The cursor keeps a *probe*, an iterator of the same dataset
    that is never pulled; its TF checkpoint records the generators' counts. The
    Trainer calls :meth:`mark` right before making an epoch's iterator and saves
    that state with the checkpoints of the epoch (:attr:`epoch_state`), or the
    current state (:meth:`state`) at an epoch end. :meth:`restore` puts a saved
    state back, so the next iterator made yields the saved epoch's order.

    Saving uses ``ExternalStatePolicy.FAIL``: a pipeline whose state TensorFlow
    cannot save (``py_function``, ``from_generator``, stateful random ops in a
    ``map``) is refused with a ``ValueError`` naming ``checkpoint_dir``.

    Args:
        dataset: the ``tf.data.Dataset`` given to ``fit``.
    """

    def __init__(self, dataset):
        options = tf.data.Options()
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.FAIL
        self._probe = iter(dataset.with_options(options))
        self.epoch_state = self.state()  # refuses an unsaveable pipeline before training

    def state(self) -> dict:
        """The probe's TF checkpoint now, as ``{file suffix: bytes}``."""
        with tempfile.TemporaryDirectory() as folder:
            prefix = os.path.join(folder, "data")
            try:
                tf.train.Checkpoint(iterator=self._probe).write(prefix)
            except (tf.errors.OpError, ValueError) as error:
                raise ValueError(
                    "Argument `checkpoint_dir` needs a dataset whose state TensorFlow can "
                    "save; replace `py_function`/`from_generator` and stateful random ops "
                    "in `map` (tf.random.uniform, Keras random layers) with stateless ones "
                    "(tf.random.stateless_*, seeded `Dataset.random`), or pass arrays. "
                    f"Received: a dataset whose state cannot be saved ({error.__class__.__name__}: "
                    f"{str(error).strip().splitlines()[0][:300]})"
                ) from None
            return {name[len("data"):]: _read(os.path.join(folder, name))
                    for name in sorted(os.listdir(folder)) if name.startswith("data")}

    def mark(self) -> None:
        """Record the state before an epoch's iterator is made (:attr:`epoch_state`)."""
        self.epoch_state = self.state()

    def restore(self, state: dict) -> None:
        """Put back a state returned by :meth:`state`."""
        with tempfile.TemporaryDirectory() as folder:
            for suffix, data in state.items():
                with open(os.path.join(folder, "data" + suffix), "wb") as handle:
                    handle.write(data)
            try:
                tf.train.Checkpoint(iterator=self._probe).read(
                    os.path.join(folder, "data")).assert_consumed()
            except (tf.errors.OpError, AssertionError, ValueError) as error:
                raise ValueError(
                    "The checkpoint's dataset state does not match this dataset (another "
                    "pipeline). Use a new folder or the same script. Received: a dataset "
                    f"whose state could not be restored ({error.__class__.__name__})"
                ) from None
        self.epoch_state = state


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
