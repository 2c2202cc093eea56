"""A crafted cache file is never returned as a data set (issue 18, section 3).

Each crafted file carries a sha256 of its own arrays, as the old cache format
did, so a cache that checks a checksum stored beside the data accepts it."""

import hashlib
import logging
import tracemalloc

import numpy as np
import pytest

from keras_trainkit import datasets

KEYS = ("x_train", "y_train", "x_test", "y_test")


def _self_checksum(arrays):
    """The old cache format's checksum, written here from its definition."""
    digest = hashlib.sha256()
    for key in KEYS:
        array = np.ascontiguousarray(arrays[key])
        for part in (key.encode(), str(array.dtype).encode(), str(array.shape).encode(),
                     array.tobytes()):
            digest.update(part)
    return digest.hexdigest()


def _craft(path, arrays, compressed=False):
    save = np.savez_compressed if compressed else np.savez
    save(path, sha256=np.array(_self_checksum(arrays)), **arrays)


@pytest.fixture(scope="module")
def true_mnist1d():
    """MNIST-1D straight from the mnist1d package's generator (seed 42)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())  # its defaults: seed 42, no shuffle
    finally:
        np.random.set_state(state)
    return {"x_train": data["x"].astype(np.float32), "y_train": data["y"].astype(np.int64),
            "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64)}


@pytest.fixture
def cache(tmp_path, monkeypatch, true_mnist1d):
    """An empty cache folder; "generating" MNIST-1D returns the true arrays at once."""
    monkeypatch.setenv("KERAS_TRAINKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(datasets, "_generate_mnist1d",
                        lambda shuffle_seq, seed: {k: v.copy() for k, v in true_mnist1d.items()})
    return tmp_path


def _poisoned_labels(arrays):
    return {**arrays, "y_train": (arrays["y_train"] + 1) % 10}


def _shape_7_3(arrays):
    return {**arrays, "x_train": np.zeros((7, 3), np.float32), "y_train": np.zeros(7, np.int64)}


def _label_99(arrays):
    y = arrays["y_train"].copy()
    y[0] = 99
    return {**arrays, "y_train": y}


@pytest.mark.parametrize("craft", [_poisoned_labels, _shape_7_3, _label_99])
def test_crafted_mnist1d_cache_is_not_trusted(cache, true_mnist1d, craft, caplog):
    path = datasets._mnist1d_cache_path(False, 42)
    _craft(path, craft(true_mnist1d))
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.datasets"):
        (x, y), (x_test, y_test) = datasets.load_mnist1d()
    np.testing.assert_array_equal(y, true_mnist1d["y_train"])
    np.testing.assert_array_equal(x, true_mnist1d["x_train"])
    np.testing.assert_array_equal(y_test, true_mnist1d["y_test"])
    assert any("regenerating" in r.message for r in caplog.records)
    with np.load(path) as rewritten:  # the true data replaced it
        np.testing.assert_array_equal(rewritten["y_train"], true_mnist1d["y_train"])


def test_small_file_that_expands_to_64_mb_is_refused_unread(cache, true_mnist1d, caplog):
    path = datasets._mnist1d_cache_path(False, 42)
    bomb = {**true_mnist1d, "x_train": np.zeros((400_000, 40), np.float32),  # 64 MB of zeros
            "y_train": np.zeros(400_000, np.int64)}
    _craft(path, bomb, compressed=True)
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="keras_trainkit.datasets"):
            (x, y), _ = datasets.load_mnist1d()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (4000, 40)
    np.testing.assert_array_equal(y, true_mnist1d["y_train"])
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB allocated reading a 64 MB bomb"
    assert any("expands to" in r.message for r in caplog.records)


@pytest.mark.parametrize("extra", ["bomb", "not_an_array"])
def test_a_member_named_like_an_array_without_npy_is_not_read(cache, true_mnist1d, extra, caplog):
    """np.load's ``data["x_train"]`` takes a member named ``x_train`` before ``x_train.npy``:
    a 64 MB bomb there was read (62 MB), bytes there crashed the loader (AttributeError)."""
    import io
    import zipfile

    path = datasets._mnist1d_cache_path(False, 42)
    datasets.load_mnist1d()  # the true data, cached
    if extra == "bomb":
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(16_000_000, np.float32))
        name, payload, compression = "x_train", buffer.getvalue(), zipfile.ZIP_DEFLATED
    else:
        name, payload, compression = "y_test", b"not an array", zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "a", compression=compression) as archive:
        archive.writestr(name, payload)
    tracemalloc.start()
    try:
        (x, y), (x_test, y_test) = datasets.load_mnist1d()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(x, true_mnist1d["x_train"])
    np.testing.assert_array_equal(y_test, true_mnist1d["y_test"])
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB allocated reading the cache"


def test_other_seeds_are_never_read_from_the_cache(cache, true_mnist1d):
    """No checksum ships for seed 7, so a cache file for it cannot be verified."""
    path = datasets._mnist1d_cache_path(False, 7)
    _craft(path, _poisoned_labels(true_mnist1d))
    (_, y), _ = datasets.load_mnist1d(seed=7)
    np.testing.assert_array_equal(y, true_mnist1d["y_train"])  # what "generation" gave


def test_generated_data_that_miss_the_shipped_checksum_are_used_but_not_cached(
        cache, true_mnist1d, monkeypatch, caplog):
    other = {**true_mnist1d, "x_train": true_mnist1d["x_train"] + np.float32(1e-3)}
    monkeypatch.setattr(datasets, "_generate_mnist1d", lambda shuffle_seq, seed: other)
    with caplog.at_level(logging.WARNING, logger="keras_trainkit.datasets"):
        (x, _), _ = datasets.load_mnist1d()
    np.testing.assert_array_equal(x, other["x_train"])
    assert not datasets._mnist1d_cache_path(False, 42).exists()
    assert any("differs from the checksum shipped" in r.message for r in caplog.records)


def test_digits_are_cached_and_a_crafted_digits_file_is_not_trusted(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    monkeypatch.setenv("KERAS_TRAINKIT_CACHE", str(tmp_path))
    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        (bunch.images / 16.0).astype(np.float32)[..., None], bunch.target.astype(np.int64),
        test_size=0.2, random_state=0, stratify=bunch.target)
    (x, y), _ = datasets.load_digits()
    np.testing.assert_array_equal(x, x_train)
    np.testing.assert_array_equal(y, y_train)
    path = next(tmp_path.glob("digits*.npz"))
    with monkeypatch.context() as patch:  # the second call reads the cache
        patch.setattr(datasets, "_split_digits", lambda: pytest.fail("cache not used"))
        (x2, _), _ = datasets.load_digits()
    np.testing.assert_array_equal(x2, x_train)
    y_bad = y_train.copy()
    y_bad[:5] = 99
    _craft(path, {"x_train": x_train, "y_train": y_bad, "x_test": x_test, "y_test": y_test})
    (_, y3), _ = datasets.load_digits()
    np.testing.assert_array_equal(y3, y_train)


def test_a_cache_file_is_readable_as_the_umask_allows(cache):
    """A cache folder may be shared (several users, a shared file system): the file gets
    the mode of any file the user writes, 0o666 less the umask (mkstemp made it 0o600)."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        datasets.load_mnist1d()
    finally:
        os.umask(previous)
    [path] = cache.glob("*.npz")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left


def test_a_failed_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from keras_trainkit import _dataset_cache
    from keras_trainkit.utils import files

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    arrays = {key: np.zeros(3) for key in KEYS}
    with pytest.raises(OSError, match="No space left"):
        _dataset_cache.write(tmp_path / "data.npz", arrays)
    assert list(tmp_path.iterdir()) == []
