import socket

import numpy as np
import pytest
import tensorflow as tf

from keras_trainkit import _dataset_cache, datasets


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TRAINKIT_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_load_mnist1d_shapes_and_classes(fresh_cache, no_network):
    (x, y), (x_test, y_test) = datasets.load_mnist1d()
    assert x.shape == (4000, 40) and x_test.shape == (1000, 40)
    assert x.dtype == np.float32 and np.issubdtype(y.dtype, np.integer)
    assert set(np.unique(y)) == set(range(10)) == set(np.unique(y_test))
    assert np.all(np.isfinite(x))
    assert list(fresh_cache.glob("*.npz"))


def test_second_call_reads_cache(fresh_cache, monkeypatch):
    first = datasets.load_mnist1d()

    def must_not_generate(*args):
        raise AssertionError("regenerated although the cache is intact")

    monkeypatch.setattr(datasets, "_generate_mnist1d", must_not_generate)
    second = datasets.load_mnist1d()
    for a, b in zip(np.concatenate([*first[0], *first[1]], axis=None),
                    np.concatenate([*second[0], *second[1]], axis=None)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte"])
def test_corrupt_cache_is_regenerated(fresh_cache, damage):
    (x, y), _ = datasets.load_mnist1d()
    path = next(fresh_cache.glob("*.npz"))
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file")
    else:  # a flipped byte inside the x_train payload keeps the zip readable
        data = bytearray(raw)
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    (x2, y2), _ = datasets.load_mnist1d()
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert _dataset_cache.read(path, datasets._mnist1d_spec(False, 42)) is not None  # rewritten


def test_generation_keeps_numpy_global_state(fresh_cache):
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    datasets.load_mnist1d()
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_shuffled_variant_permutes_positions(fresh_cache):
    (x, y), _ = datasets.load_mnist1d()
    (xs, ys), _ = datasets.load_mnist1d(shuffle_seq=True)
    assert xs.shape == x.shape
    np.testing.assert_array_equal(y, ys)
    assert not np.allclose(x, xs)
    # the same fixed permutation of the 40 positions: sorted values per row agree
    np.testing.assert_allclose(np.sort(x, axis=1), np.sort(xs, axis=1), rtol=1e-5, atol=1e-6)


def test_load_mnist1d_rejects_bad_arguments():
    with pytest.raises(TypeError, match="Received: shuffle_seq="):
        datasets.load_mnist1d(shuffle_seq="yes")
    with pytest.raises(TypeError, match="Received: seed="):
        datasets.load_mnist1d(seed=1.5)


def test_load_digits():
    (x, y), (x_test, y_test) = datasets.load_digits()
    assert x.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert len(np.unique(y)) == 10
    (x2, _), _ = datasets.load_digits()
    np.testing.assert_array_equal(x, x2)  # fixed split


def test_load_by_name_and_unknown_name():
    assert datasets.describe("digits").num_classes == 10
    with pytest.raises(ValueError, match="Received: name='cifar'"):
        datasets.load("cifar")


def test_to_dataset_batches_and_validates():
    x = np.arange(10, dtype="float32").reshape(10, 1)
    y = np.arange(10)
    ds = datasets.to_dataset(x, y, batch_size=4, shuffle=True, seed=1)
    batches = list(ds)
    assert [int(b[0].shape[0]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert isinstance(ds, tf.data.Dataset)
    with pytest.raises(ValueError, match="len\\(y\\)=9"):
        datasets.to_dataset(x, y[:9])
    with pytest.raises(ValueError, match="batch_size"):
        datasets.to_dataset(x, y, batch_size=0)
    with pytest.raises(ValueError, match="at least one example"):
        datasets.to_dataset(x[:0], y[:0])
    # a seed that is no integer reached tf.data and failed in its string formatting
    with pytest.raises(TypeError, match="Argument `seed` must be an integer, not str"):
        datasets.to_dataset(x, y, shuffle=True, seed="a")
    with pytest.raises(ValueError, match="Received: seed=-1"):
        datasets.to_dataset(x, y, shuffle=True, seed=-1)
    # a string was truthy: "False" shuffled
    with pytest.raises(TypeError, match="Argument `shuffle` must be of type bool, not str"):
        datasets.to_dataset(x, y, shuffle="False")


def test_to_dataset_drop_remainder_keeps_full_batches_and_never_gives_nothing():
    x = np.arange(10, dtype="float32").reshape(10, 1)
    full = datasets.to_dataset(x, np.arange(10), batch_size=4, drop_remainder=True)
    assert [int(b[0].shape[0]) for b in full] == [4, 4]
    assert [int(b[0].shape[0]) for b in datasets.to_dataset(x, batch_size=10, drop_remainder=True)] == [10]
    # fewer examples than one batch: an empty dataset, on which fit trains nothing, silently
    with pytest.raises(ValueError, match="number of examples \\(10\\).*Received: batch_size=16"):
        datasets.to_dataset(x, batch_size=16, drop_remainder=True)
    with pytest.raises(TypeError, match="Argument `drop_remainder` must be of type bool, not str"):
        datasets.to_dataset(x, drop_remainder="False")


def test_random_shift_rolls_each_signal_within_the_bound():
    x = np.tile(np.arange(10, dtype="float32"), (64, 1))
    data = datasets.random_shift(datasets.to_dataset(x, np.zeros(64), batch_size=16), 2, seed=1)
    shifted = np.concatenate([xb.numpy() for xb, _ in data])
    offsets = (-shifted[:, 0]) % 10  # x'[0] = x[-s mod 10] = -s mod 10, so this is s mod 10
    assert set(offsets.astype(int)) == {0, 1, 2, 8, 9}  # s in [-2, 2], all seen
    for row, s in zip(shifted, offsets.astype(int)):
        np.testing.assert_array_equal(row, np.roll(np.arange(10), s))
    again = np.concatenate([xb.numpy() for xb, _ in
                            datasets.random_shift(datasets.to_dataset(x, np.zeros(64), batch_size=16),
                                                  2, seed=1)])
    np.testing.assert_array_equal(shifted, again)  # seeded: reproducible
    plain = datasets.to_dataset(x, np.zeros(64), batch_size=16)
    assert datasets.random_shift(plain, 0) is plain
    with pytest.raises(ValueError, match="Received: shift=-1"):
        datasets.random_shift(plain, -1)
    with pytest.raises(TypeError, match="Argument `seed` must be an integer, not float"):
        datasets.random_shift(plain, 2, seed=1.5)


def test_to_dataset_takes_several_inputs_and_checks_every_array():
    """A tuple of inputs counted as its number of inputs: ``(a, b), y`` was refused
    (len(x)=2), and a ``y`` of 2 labels passed to fail inside tf.data."""
    a, b = np.ones((10, 3), "float32"), np.zeros((10, 2), "float32")
    y = np.arange(10) % 2
    for x in ((a, b), [a, b], {"a": a, "b": (a, b)}):
        batches = list(datasets.to_dataset(x, y, batch_size=4))
        assert [int(batch[1].shape[0]) for batch in batches] == [4, 4, 2]
    with pytest.raises(ValueError, match=r"Received: len\(x\[0\]\)=10, len\(x\[1\]\)=10, len\(y\)=2"):
        datasets.to_dataset((a, b), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"len\(x\[1\]\)=5"):
        datasets.to_dataset((a, b[:5]), y)
    with pytest.raises(ValueError, match=r"arrays of examples.*Received: x\[0\]=1.0"):
        datasets.to_dataset([1.0, 2.0])


def test_load_mnist1d_seed_is_an_integer_in_range():
    """A NumPy integer seed is a seed; True (the seed-1 data set before) and -1 are refused
    with the argument's name."""
    (x, _), _ = datasets.load_mnist1d(seed=np.int64(42))
    (expected, _), _ = datasets.load_mnist1d(seed=42)
    np.testing.assert_array_equal(x, expected)
    with pytest.raises(TypeError, match="Argument `seed` must be an integer, not bool"):
        datasets.load_mnist1d(seed=True)
    with pytest.raises(ValueError, match="Received: seed=-1"):
        datasets.load_mnist1d(seed=-1)
