"""Hostile, corrupt, foreign and old checkpoints: one clear error naming the file, nothing read
from outside the folder, nothing deleted that a resume may need, another run refused."""

import io
import json
import zipfile

import keras
import numpy as np
import pytest

from keras_trainkit.training import Trainer
from keras_trainkit.training.checkpointer import CHECKPOINT_FILE
from keras_trainkit.utils.checkpoints import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)

X = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
Y = np.random.default_rng(1).normal(size=(16, 1)).astype("float32")


def make():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    return Trainer(model, keras.optimizers.Adam(0.1), "mse", jit_compile=False, seed=0)


def fit(folder, trainer=None, **kwargs):
    trainer = trainer or make()
    options = dict(batch_size=4, epochs=1, verbose=0, checkpoint_dir=str(folder))
    options.update(kwargs)
    trainer.fit(X, Y, **options)
    return trainer


def _zip(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _flip(data, offset):
    """``data`` with the byte at ``offset`` inverted (inside an entry's data: its CRC must catch it)."""
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def _header(**changes):
    header = {"format": "keras_trainkit.checkpoint", "version": 2, "arrays": [], "blobs": {},
              "meta": {}}
    header.update(changes)
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


CORRUPT = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: bytes(range(256)) * 40,
    "one_byte_flipped": lambda good: _flip(good, good.index(b"keras_trainkit.checkpoint") + 3),
    "no_header": lambda good: _zip({"a0.npy": _npy(np.zeros(3))}),
    "foreign_header": lambda good: _zip({"__checkpoint__.npy": _npy(_header(format="other"))}),
    "future_version": lambda good: _zip({"__checkpoint__.npy": _npy(_header(version=99))}),
    "header_not_json": lambda good: _zip({"__checkpoint__.npy": _npy(np.frombuffer(b"\xff\xfe{", np.uint8))}),
    "pickled_header": lambda good: _zip({"__checkpoint__.npy": _npy(np.array([{"a": 1}], dtype=object))}),
    "size_lies": lambda good: _zip({
        "__checkpoint__.npy": _npy(_header(arrays=[{"shape": [4096, 4096], "dtype": "<f4"}])),
        "a0.npy": _npy(np.zeros(3, np.float32))}),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_checkpoint_gets_one_clear_error_naming_the_file(tmp_path, case):
    fit(tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(CORRUPT[case](path.read_bytes()))
    with pytest.raises(CheckpointError, match=f"(?s){CHECKPOINT_FILE}.*(Delete|Use a new folder)"):
        fit(tmp_path, epochs=2)


@pytest.mark.parametrize("case", sorted(CORRUPT) + ["array_byte_flipped"])
def test_reading_the_metadata_alone_makes_the_same_checks(tmp_path, case):
    path = tmp_path / CHECKPOINT_FILE
    save_checkpoint(path, [np.arange(64, dtype=np.float32)], {"epoch": 3})
    assert read_checkpoint_meta(path) == {"epoch": 3}
    assert read_checkpoint_meta(tmp_path / "missing.npz") is None
    good = path.read_bytes()
    if case == "array_byte_flipped":  # inside the array's data: only its CRC tells
        damaged = _flip(good, good.index(b"a0.npy") + 200)
    else:
        damaged = CORRUPT[case](good)
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match=f"{CHECKPOINT_FILE}.*(Delete|Use a new folder)"):
        read_checkpoint_meta(path)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    fit(tmp_path)
    keras.utils.set_random_seed(0)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    trainer = Trainer(other, keras.optimizers.Adam(0.1), "mse", jit_compile=False, seed=0)
    with pytest.raises(CheckpointError, match="other variables"):
        fit(tmp_path, trainer, epochs=2)


@pytest.mark.parametrize("change, what", [
    (dict(batch_size=8), "batch size was 4, this fit's is 8"),
    (dict(x=X[:, ::-1].copy()), "its data was"),
    (dict(steps_per_epoch=2), "steps per epoch"),
])
def test_a_resume_with_other_data_or_arguments_is_refused(tmp_path, change, what):
    fit(tmp_path)
    trainer = make()
    options = dict(batch_size=4, epochs=2, verbose=0, checkpoint_dir=str(tmp_path))
    options.update(change)
    x = options.pop("x", X)
    with pytest.raises(CheckpointError, match=what):
        trainer.fit(x, Y, **options)


def test_a_position_the_run_cannot_reach_is_refused(tmp_path):
    trainer = fit(tmp_path)
    arrays, meta, blobs = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    save_checkpoint(tmp_path / CHECKPOINT_FILE, arrays, {**meta, "step": 10000}, blobs)
    with pytest.raises(CheckpointError, match="step 10000 of an epoch of 4 steps"):
        fit(tmp_path, epochs=2)
    del trainer


# ------------------------------------------------------------------ keras_trainkit 0.1 folders
def _legacy(folder, arrays, name="ckpt-000001-000000000.npz", **manifest):
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    data = buffer.getvalue()
    (folder / "ckpt-000001-000000000.npz").write_bytes(data)
    record = {"epoch": 1, "step": 0, "seed": 0, "checkpoint": name, "arrays": len(arrays), "bytes": len(data)}
    record.update(manifest)
    (folder / "manifest.json").write_text(json.dumps(record))


def _arrays_after_one_epoch(tmp_path):
    trainer = fit(tmp_path / "new")
    return trainer, load_checkpoint(tmp_path / "new" / CHECKPOINT_FILE)[0]


def test_an_old_format_folder_resumes_and_is_converted(tmp_path):
    trainer, arrays = _arrays_after_one_epoch(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    _legacy(old, arrays)
    resumed = make()
    resumed.fit(X, Y, batch_size=4, epochs=2, verbose=0, checkpoint_dir=str(old))
    trainer.fit(X, Y, batch_size=4, epochs=2, verbose=0, checkpoint_dir=str(tmp_path / "new"))
    for a, b in zip(trainer.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert sorted(p.name for p in old.iterdir()) == [CHECKPOINT_FILE]


@pytest.mark.parametrize("name", ["../outside.npz", "/etc/passwd", "ckpt-000001-000000000.npz/../../x.npz"])
def test_an_old_manifest_naming_a_file_outside_its_folder_is_not_read(tmp_path, name):
    _, arrays = _arrays_after_one_epoch(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    _legacy(old, arrays, name=name)
    np.savez(tmp_path / "outside.npz", *arrays)  # a valid file that must not be read
    with pytest.raises(CheckpointError, match="not a checkpoint file in its own folder"):
        fit(old, epochs=2)


def test_old_checkpoint_data_without_its_manifest_is_refused_and_kept(tmp_path):
    _, arrays = _arrays_after_one_epoch(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    _legacy(old, arrays)
    (old / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="without its manifest.json"):
        fit(old, epochs=2)
    assert (old / "ckpt-000001-000000000.npz").exists()  # nothing deleted


@pytest.mark.parametrize("manifest", ['{"checkpoint": ', '{"epoch": 1}', "\xff\xfe"])
def test_a_damaged_old_manifest_gets_a_clear_error(tmp_path, manifest):
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_bytes(manifest.encode("latin-1"))
    with pytest.raises(CheckpointError, match="manifest.json.*is damaged"):
        fit(old)


def test_a_resumed_fit_says_where_it_resumed_and_a_fresh_one_says_nothing(tmp_path, capsys):
    fit(tmp_path / "run", epochs=1, verbose=2)
    first = capsys.readouterr().out
    assert "Resumed from" not in first
    fit(tmp_path / "run", epochs=2, verbose=2)
    assert f"Resumed from {tmp_path / 'run'} at epoch 2, step 0." in capsys.readouterr().out
    fit(tmp_path / "run", epochs=3, verbose=0)
    assert "Resumed from" not in capsys.readouterr().out  # verbose=0 prints nothing
