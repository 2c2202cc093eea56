"""Embedded data sets that need no network: MNIST-1D and scikit-learn's 8x8 digits.

* :func:`load_mnist1d` generates MNIST-1D (Greydanus 2020, "Scaling down deep
  learning") locally with the ``mnist1d`` package's ``make_dataset``; it never
  uses that package's download or pickle path.
* :func:`load_digits` returns scikit-learn's bundled 8x8 digits as images.

Both are cached as ``.npz`` in ``$KERAS_TRAINKIT_CACHE`` (default
``~/.cache/keras_trainkit``). A cache file is trusted only as far as the code can
verify it: its arrays must have the data set's shapes, dtypes, label range and
size, and match a sha256 shipped in this module; anything else (corrupt, partial,
crafted) is set aside with a warning and the data generated again (see
``keras_trainkit._dataset_cache``).
* :func:`to_dataset` turns arrays into a batched, prefetched ``tf.data.Dataset``.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_trainkit import _dataset_cache
from keras_trainkit._dataset_cache import ArraySpec
from keras_trainkit.utils.validation import check_number, check_positive, check_seed, check_type

logger = logging.getLogger(__name__)

CACHE_ENV = "KERAS_TRAINKIT_CACHE"
# Bump when the generated arrays change (e.g. different generator arguments).
_MNIST1D_FORMAT = 1
_MNIST1D_SHAPES = {"x_train": (4000, 40), "y_train": (4000,), "x_test": (1000, 40), "y_test": (1000,)}
#: sha256 (``_dataset_cache.checksum``) of MNIST-1D generated with the ``mnist1d``
#: package's default arguments (0.0.2) and ``seed=42``, by ``shuffle_seq``: the only
#: MNIST-1D arrays a cache file is trusted for.
_MNIST1D_SHA256 = {
    False: "fddacc518bba726ebb6ae791afdae4c455d689b81a456662fd45aa385b013387",
    True: "e5002f087472011116f76555b0d305f19cb79b7d92d6843d785cdd5f919f17b4",
}
_MNIST1D_DEFAULT_SEED = 42
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
_DIGITS_FORMAT = 1
#: The digits split below, as scikit-learn's bundled data set and its stratified
#: ``train_test_split`` give it (sha256 as for MNIST-1D).
_DIGITS_SPEC = ArraySpec(
    shapes={"x_train": (1437, 8, 8, 1), "y_train": (1437,), "x_test": (360, 8, 8, 1),
            "y_test": (360,)},
    num_classes=10, sha256="ecbe003947558b66b5e58cbe83234e8f064f3469e1b6d1f97e13cda7f81a861b")


@dataclass(frozen=True)
class DatasetInfo:
    """Shape and class count of one embedded data set."""

    name: str
    train_shape: tuple[int, ...]
    test_shape: tuple[int, ...]
    num_classes: int
    description: str


def cache_dir() -> Path:
    """The cache directory: ``$KERAS_TRAINKIT_CACHE`` or ``~/.cache/keras_trainkit``."""
    root = os.environ.get(CACHE_ENV)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "keras_trainkit"
    return path


def _mnist1d_cache_path(shuffle_seq: bool, seed: int) -> Path:
    tag = f"mnist1d_v{_MNIST1D_FORMAT}_shuffle{int(shuffle_seq)}_seed{seed}"
    return cache_dir() / f"{tag}.npz"


def _mnist1d_spec(shuffle_seq: bool, seed: int) -> ArraySpec:
    """What MNIST-1D must be; a checksum only for the default seed (see :func:`load_mnist1d`)."""
    return ArraySpec(shapes=_MNIST1D_SHAPES, num_classes=10,
                     sha256=_MNIST1D_SHA256[shuffle_seq] if seed == _MNIST1D_DEFAULT_SEED else None)


def _generate_mnist1d(shuffle_seq: bool, seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.shuffle_seq = shuffle_seq
    args.seed = seed
    # make_dataset seeds NumPy's and Python's global generators (mnist1d.utils.set_seed);
    # keep the caller's states intact, so a script's draws do not depend on the cache.
    state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
        random.setstate(python_state)
    return {
        "x_train": np.asarray(data["x"], dtype=np.float32),
        "y_train": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def load_mnist1d(shuffle_seq: bool = False, seed: int = 42):
    """Load MNIST-1D, generated locally and cached.

    MNIST-1D (Greydanus 2020) has 10 classes of length-40 signals; the default
    split is 4000 training and 1000 test examples. The data are generated with
    ``mnist1d.data.make_dataset`` (no download), so the first call takes a few
    seconds and later calls read the ``.npz`` cache in :func:`cache_dir`. A
    cache file is used only if its arrays have the data set's shapes, dtypes and
    labels and match the checksum shipped in this module; any other file is set
    aside with a warning and the data generated again. Only ``seed=42`` (the
    paper's data set) has a shipped checksum: other seeds are generated on every
    call and never cached.

    Args:
        shuffle_seq: if ``True``, the 40 positions are permuted by one fixed
            permutation (the paper's "shuffled" variant, which removes spatial
            structure).
        seed: the generator seed; 42 gives the paper's data set.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``float32`` arrays of shape
        ``(n, 40)`` and ``int64`` labels in ``[0, 10)``.

    Example:
        >>> (x, y), (x_test, y_test) = load_mnist1d()
        >>> x.shape, x_test.shape
        ((4000, 40), (1000, 40))
    """
    check_type("shuffle_seq", shuffle_seq, bool)
    seed = check_seed("seed", seed, optional=False)
    arrays = _dataset_cache.load(
        _mnist1d_cache_path(shuffle_seq, seed), _mnist1d_spec(shuffle_seq, seed),
        lambda: _generate_mnist1d(shuffle_seq, seed), f"MNIST-1D (shuffle_seq={shuffle_seq}, seed={seed})")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def _split_digits() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load_digits():
    """Load scikit-learn's bundled 8x8 digits as images scaled to ``[0, 1]``.

    1797 images of 10 classes, split with a stratified
    ``sklearn.model_selection.train_test_split`` (``test_size=0.2``,
    ``random_state=0``): 1437 training and 360 test images. The split is cached
    in :func:`cache_dir` (importing scikit-learn takes seconds) and read back only
    if it matches the checksum shipped in this module, as for MNIST-1D.

    Returns:
        ``(x_train, y_train), (x_test, y_test)`` with images ``(n, 8, 8, 1)``
        ``float32`` and ``int64`` labels.

    Example:
        >>> (x, y), (x_test, y_test) = load_digits()
        >>> x.shape, x_test.shape
        ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    arrays = _dataset_cache.load(cache_dir() / f"digits_v{_DIGITS_FORMAT}.npz", _DIGITS_SPEC,
                                 _split_digits, "the 8x8 digits")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


LOADERS = {"mnist1d": load_mnist1d, "digits": load_digits}


def load(name: str):
    """Load an embedded data set by name (``"mnist1d"`` or ``"digits"``)."""
    if name not in LOADERS:
        raise ValueError(
            f"Argument `name` must be one of {', '.join(map(repr, LOADERS))}. Received: name={name!r}"
        )
    return LOADERS[name]()


def describe(name: str) -> DatasetInfo:
    """Load ``name`` and return its shapes and class count."""
    (x_train, y_train), (x_test, _) = load(name)
    descriptions = {
        "mnist1d": "MNIST-1D (Greydanus 2020), generated locally",
        "digits": "scikit-learn 8x8 digits, stratified 80/20 split",
    }
    return DatasetInfo(
        name=name,
        train_shape=tuple(x_train.shape),
        test_shape=tuple(x_test.shape),
        num_classes=int(np.unique(y_train).size),
        description=descriptions[name],
    )


def to_dataset(x, y=None, batch_size: int = 32, shuffle: bool = False, seed: int | None = None,
               drop_remainder: bool = False):
    """Turn arrays into a batched, prefetched ``tf.data.Dataset`` (float64 becomes float32).

    The pipeline is the Trainer's own (``keras_trainkit.utils.pipelines``):
    each batch is a gather of (shuffled) indices, so no array is copied per
    epoch, and each epoch of a shuffled dataset has its own order.

    Args:
        x: features (array or nested structure of arrays).
        y: optional targets with the same first dimension.
        batch_size: examples per batch.
        shuffle: shuffle all examples anew each epoch.
        seed: shuffle seed, for reproducible order.
        drop_remainder: drop a last, smaller batch (``batch_size`` must then be at
            most the number of examples).

    Example:
        >>> import numpy as np
        >>> ds = to_dataset(np.zeros((10, 3)), np.zeros(10), batch_size=4)
        >>> [int(b[0].shape[0]) for b in ds]
        [4, 4, 2]
    """
    from keras_trainkit.utils.pipelines import array_dataset

    check_positive("batch_size", batch_size, integer=True)
    check_type("shuffle", shuffle, bool)
    seed = check_seed("seed", seed)
    import keras

    x, y = keras.tree.lists_to_tuples(x), keras.tree.lists_to_tuples(y)  # a list: several inputs, as Keras
    lengths = {**_example_counts("x", x), **_example_counts("y", y)}
    shown = ", ".join(f"len({name})={n}" for name, n in lengths.items())
    if not lengths or min(lengths.values()) == 0:
        raise ValueError(f"Argument `x` must hold at least one example. Received: {shown}")
    if len(set(lengths.values())) > 1:
        raise ValueError("Arguments `x` and `y` must have the same number of examples in every array. "
                         f"Received: {shown}")
    check_type("drop_remainder", drop_remainder, bool)
    examples = min(lengths.values())
    if drop_remainder and examples < batch_size:
        raise ValueError(f"Argument `batch_size` must be at most the number of examples ({examples}) "
                         "with drop_remainder=True, or the dataset has no batch at all. "
                         f"Received: batch_size={batch_size}")
    return array_dataset(x, y, batch_size=int(batch_size), shuffle=shuffle, seed=seed,
                         drop_remainder=drop_remainder)


def _example_counts(name: str, data) -> dict[str, int]:
    """``{"x[0]": n0, "x[1]": n1, ...}``: the examples of each array of a structure (several
    inputs, a dict), or ``{"x": n}`` for one array; ``{}`` for ``None``."""
    import keras

    if data is None:
        return {}
    counts = {}
    for path, leaf in keras.tree.flatten_with_path(data):
        where = name + "".join(f"[{key!r}]" for key in path)
        if not np.shape(leaf):
            raise ValueError(f"Argument `{name}` must hold arrays of examples (one per row). "
                             f"Received: {where}={leaf!r}")
        counts[where] = np.shape(leaf)[0]
    return counts


def random_shift(data, shift: int, seed: int | None = None):
    """Augment a batched ``(x, y)`` dataset of 1-D signals with random circular shifts.

    Each example's signal is rolled along its first axis after the batch axis by
    ``s`` positions, ``s`` drawn uniformly from ``[-shift, shift]`` for every
    example and every epoch: ``x'[i] = x[(i - s) mod length]``. Translation is the
    nuisance MNIST-1D's generator itself varies, so shifted signals keep their label.

    Args:
        data: a batched ``tf.data.Dataset`` of ``(x, y)`` with ``x`` of shape
            ``(batch, length, ...)``.
        shift: the largest shift, >= 0 (0 returns ``data`` unchanged).
        seed: seed of the shifts, for a reproducible run.

    Example:
        >>> import numpy as np
        >>> ds = random_shift(to_dataset(np.arange(8.0)[None], np.zeros(1)), shift=2, seed=0)
        >>> sorted(next(iter(ds))[0].numpy()[0].tolist())
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    """
    import tensorflow as tf

    shift = check_number("shift", shift, minimum=0, integer=True)
    seed = check_seed("seed", seed)
    if shift == 0:
        return data
    generator = (tf.random.Generator.from_seed(seed) if seed is not None
                 else tf.random.Generator.from_non_deterministic_state())

    def augment(x, y):
        length = tf.shape(x)[1]
        offsets = generator.uniform([tf.shape(x)[0]], -shift, shift + 1, dtype=tf.int32)
        index = (tf.range(length)[None, :] - offsets[:, None]) % length
        return tf.gather(x, index, batch_dims=1), y

    return data.map(augment)


__all__ = [
    "DatasetInfo",
    "cache_dir",
    "describe",
    "load",
    "load_digits",
    "load_mnist1d",
    "random_shift",
    "to_dataset",
]
