"""Input checks and input pipelines of the :class:`~keras_trainkit.training.Trainer`.

Every check runs before the first training step and raises a ``ValueError`` (or
``TypeError``) that names the argument, what must hold and what was received, so
bad data never surfaces as a stack trace from deep inside TensorFlow.

NumPy arrays are checked completely (lengths, real numeric dtype, shape against
the model's input, emptiness, non-finite values, negative sample weights, and
labels against the compiled loss: class ids in ``[0, C)`` for a sparse
categorical loss on a model with ``C`` outputs, ``[0, 1]`` for a binary
cross-entropy). A ``tf.data.Dataset`` is checked through its ``element_spec``
(dtype, shape), its cardinality (empty) and its first batch (non-finite values,
sample weights, labels); later batches are covered by the Trainer's ``on_nan``
policy.
"""

from __future__ import annotations

import collections.abc
import math

import keras
import numpy as np
import tensorflow as tf

from keras_trainkit._compat.tensorflow import dataset_graph_def
from keras_trainkit.training._labels import label_problem
from keras_trainkit.utils.validation import compiled_loss_reads_targets


def _flat(structure):
    return tf.nest.flatten(structure)


def check_input_kind(data, name: str) -> None:
    """Refuse, naming the argument, data the Trainer does not read: a
    ``keras.utils.PyDataset``, a generator or other iterable without a shape (a
    PyTorch ``DataLoader``). ``model.fit`` reads them through Keras's data adapters;
    the Trainer takes arrays (or a list/dict of them) and a ``tf.data.Dataset``.
    Without this, a ``PyDataset`` was read as one array (``y`` missing, or NumPy's
    "inhomogeneous shape"), and as ``validation_data`` its batches were unpacked as
    ``(x, y)``."""
    if (data is None or is_dataset(data) or hasattr(data, "shape")
            or isinstance(data, (list, tuple, dict, str, bytes))):
        return
    if isinstance(data, keras.utils.PyDataset):
        kind = "a keras.utils.PyDataset"
    elif isinstance(data, collections.abc.Iterator):
        kind = "a generator or iterator"
    elif isinstance(data, collections.abc.Iterable):
        kind = "an iterable without a shape"
    else:
        return
    raise TypeError(
        f"Argument `{name}` must be arrays (or a list/dict of arrays, one per model input) or a "
        f"tf.data.Dataset: the Trainer does not read {kind}, which `model.fit` reads through "
        "Keras's data adapters. Pass arrays, or wrap it in a tf.data.Dataset (e.g. "
        "`tf.data.Dataset.from_generator(..., output_signature=...)`). "
        f"Received: {name} of type {type(data).__module__}.{type(data).__qualname__}"
    )


def is_dataset(data) -> bool:
    """Whether ``data`` is a ``tf.data.Dataset`` (or a distributed dataset)."""
    return isinstance(data, (tf.data.Dataset, tf.distribute.DistributedDataset))


def _cardinality(dataset) -> int:
    """``dataset.cardinality()``; a distributed dataset has it as a property."""
    cardinality = dataset.cardinality
    return int(cardinality() if callable(cardinality) else cardinality)


def pass_batches(dataset) -> int | None:
    """The batches of one pass over a (distributed) dataset; ``None`` where not known or infinite."""
    cardinality = _cardinality(dataset)
    return cardinality if cardinality > 0 else None


def is_infinite(data) -> bool:
    """Whether ``data`` is a (distributed) dataset that never ends (``dataset.repeat()``)."""
    return is_dataset(data) and _cardinality(data) == tf.data.INFINITE_CARDINALITY


def check_ends(data, steps, *, name: str, steps_name: str, run: str) -> None:
    """Refuse an infinite dataset without a step count: the ``run`` over it (an epoch,
    a validation, an evaluation) would never end.

    Raises:
        ValueError: ``data`` is infinite and ``steps`` is ``None``.
    """
    if steps is None and is_infinite(data):
        raise ValueError(f"Argument `{name}` is an infinite tf.data.Dataset (e.g. `.repeat()`), so {run} "
                         f"would never end: pass `{steps_name}`. Received: {steps_name}=None")


def _declared_inputs(model):
    """The model's declared input tensors (``model.inputs``), or ``None`` where it has none."""
    try:
        return model.inputs or None
    except (AttributeError, ValueError):
        return None


def _model_input_shapes(model):
    """The model's declared input shapes (without the batch axis), or ``None``."""
    inputs = _declared_inputs(model)
    return None if inputs is None else [tuple(t.shape[1:]) for t in inputs]


def _check_numeric(name: str, array: np.ndarray) -> None:
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(
            f"Argument `{name}` must hold real numbers: a model's weights and losses are "
            f"real, so complex values would be cast to their real part. Received: {name} "
            f"with dtype {array.dtype}. Split it into real and imaginary features, e.g. "
            f"`np.stack([{name}.real, {name}.imag], axis=-1)`."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(
            f"Argument `{name}` must hold numbers (a numeric dtype). "
            f"Received: {name} with dtype {array.dtype}. Convert it first, e.g. "
            f"`np.asarray({name}, dtype='float32')`."
        )


def _check_python_numbers(label: str, structure) -> None:
    """Refuse a Python list/tuple of numbers (Python or NumPy scalars): Keras reads a list as
    one array per input."""
    if not isinstance(structure, (list, tuple)):
        return
    leaves = _flat(structure)
    if leaves and any(np.ndim(leaf) == 0 for leaf in leaves):
        kind = "scalars (0-d arrays)" if all(hasattr(leaf, "shape") for leaf in leaves) else "Python numbers"
        raise TypeError(
            f"Argument `{label}` must be an array (or a list/dict of arrays, one per model "
            f"input or output): a Python {type(structure).__name__} is read as one array per "
            f"input, as in Keras. Received: {label}, a {type(structure).__name__} of "
            f"{len(leaves)} {kind}. Convert it with `np.asarray({label})`."
        )


def _negative_weights(array: np.ndarray) -> str | None:
    """What is wrong with negative sample weights in ``array`` (``None``: nothing)."""
    negative = np.asarray(array) < 0
    if not negative.any():
        return None
    first = tuple(int(i) for i in np.argwhere(negative)[0])
    return (f"{int(negative.sum())} negative value(s), the first "
            f"{np.asarray(array)[first].item()!r} at index {first}")


def _check_finite(name: str, array: np.ndarray) -> None:
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = ~np.isfinite(array)
        if bad.any():
            count = int(bad.sum())
            first = np.argwhere(bad)[0]
            raise ValueError(
                f"Argument `{name}` must be finite (no NaN or Inf). Received: {name} with "
                f"{count} non-finite value(s), the first at index {tuple(int(i) for i in first)}. "
                "Clean or impute the data before training."
            )


def _model_input_shapes_by_key(model):
    """The model's declared input shapes keyed as a dict ``x`` names them, or ``None``.

    A model built on a dict of inputs is keyed by that dict's keys; otherwise each
    input by its name (Keras feeds a dict ``x`` to a list of inputs by name).
    """
    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if isinstance(structure, dict):
        return {key: tuple(t.shape[1:]) for key, t in structure.items()}
    inputs = _declared_inputs(model)
    return None if inputs is None else {t.name: tuple(t.shape[1:]) for t in inputs}


def _check_shapes_against_model(name: str, shapes, model, keys=None) -> None:
    """Compare per-example ``shapes`` with the model's inputs: one for one in order, or, for a
    dict ``x`` (``keys``: its keys in ``shapes``' order), by key; inputs not paired are not checked."""
    if keys is not None:
        by_key = _model_input_shapes_by_key(model) or {}
        pairs = [(got, by_key[key]) for key, got in zip(keys, shapes) if key in by_key]
    else:
        expected = _model_input_shapes(model)
        if expected is None or len(expected) != len(shapes):
            return
        pairs = list(zip(shapes, expected))
    for got, want in pairs:
        got = tuple(got)
        if len(got) != len(want):
            raise ValueError(
                f"Argument `{name}` must have rank {len(want) + 1} (batch axis + "
                f"{want}) to match the model's input. Received: {name} with per-example "
                f"shape {got}"
            )
        for g, w in zip(got, want):
            if g is not None and w is not None and g != w:
                raise ValueError(
                    f"Argument `{name}` must have per-example shape {want} to match the "
                    f"model's input. Received: {name} with per-example shape {got}"
                )


def _dict_keys(structure):
    """The keys of a dict ``structure`` in ``tf.nest.flatten``'s order (sorted), else ``None``."""
    return sorted(structure) if isinstance(structure, dict) else None


def check_arrays(x, y=None, sample_weight=None, model=None, *, name: str = "x") -> None:
    """Check NumPy-like inputs before training: lengths, dtype, shape, emptiness, finiteness.

    Args:
        x: features, an array or a list/dict of arrays.
        y: optional targets, an array or a structure of arrays.
        sample_weight: optional per-example weights.
        model: when given, ``x``'s per-example shape is compared with the
            model's declared input shape.
        name: the argument name used in messages (``"x"`` or ``"validation_data"``).

    Raises:
        ValueError: lengths differ, data are empty, a value is NaN/Inf, a
            sample weight is negative, a shape does not match the model, or a
            label is outside what the model's compiled loss takes.
        TypeError: a non-numeric or complex dtype, or a Python list of numbers.

    Example:
        >>> import numpy as np
        >>> check_arrays(np.zeros((3, 2)), np.zeros(4))
        Traceback (most recent call last):
        ...
        ValueError: Arguments `x` and `y` must have the same number of examples. ...
    """
    y_label = "y" if name == "x" else f"{name}[1]"
    for label, part in ((name, x), (y_label, y), ("sample_weight", sample_weight)):
        _check_python_numbers(label, part)
    xs = [np.asarray(a) for a in _flat(x)]
    if not xs:
        raise ValueError(f"Argument `{name}` must hold data. Received: {name}={x!r}")
    labelled = {f"{name}": xs}
    if y is not None:
        labelled["y" if name == "x" else f"{name}[1]"] = [np.asarray(a) for a in _flat(y)]
    if sample_weight is not None:
        labelled["sample_weight"] = [np.asarray(a) for a in _flat(sample_weight)]
    for label, arrays in labelled.items():
        for array in arrays:
            if array.ndim == 0:
                raise ValueError(
                    f"Argument `{label}` must have a batch axis (rank >= 1). "
                    f"Received: {label} with shape {array.shape}"
                )
    n = len(xs[0])
    lengths = {label: [len(a) for a in arrays] for label, arrays in labelled.items()}
    for label, lens in lengths.items():
        if any(length != n for length in lens):
            other = "y" if label == name else label
            raise ValueError(
                f"Arguments `{name}` and `{other}` must have the same number of examples. "
                f"Received: len({name})={n}, len({other})={lens if len(lens) > 1 else lens[0]}"
            )
    if n == 0:
        raise ValueError(
            f"Argument `{name}` must hold at least one example. Received: {name} with 0 examples"
        )
    for label, arrays in labelled.items():
        for array in arrays:
            _check_numeric(label, array)
            _check_finite(label, array)
            problem = _negative_weights(array) if label == "sample_weight" else None
            if problem:
                raise ValueError(
                    f"Argument `{label}` must be >= 0 (a negative weight pushes its example's "
                    f"loss up). Received: {label} with {problem}"
                )
    if model is not None:
        _check_shapes_against_model(name, [a.shape[1:] for a in xs], model, keys=_dict_keys(x))
        problem = label_problem(y, model)
        if problem:
            raise ValueError(
                f"Argument `{y_label}` must hold {problem[0]}. Received: {y_label} with {problem[1]}"
            )


def check_dataset(dataset, model=None, *, name: str = "x") -> None:
    """Check a ``tf.data.Dataset`` before training: dtype, shape, emptiness, first batch.

    The dataset must yield batches ``x``, ``(x,)``, ``(x, y)`` or
    ``(x, y, sample_weight)``. Only the first batch is scanned for NaN/Inf.

    Raises:
        ValueError: the dataset is empty, its first batch holds NaN/Inf, a
            negative sample weight or a label outside what the compiled loss
            takes, or a shape does not match the model.
        TypeError: a non-numeric or complex dtype.
    """
    if isinstance(dataset, tf.distribute.DistributedDataset):
        return
    if int(dataset.cardinality()) == 0:
        raise ValueError(
            f"Argument `{name}` must yield at least one batch. Received: an empty "
            "tf.data.Dataset (cardinality 0); check its filtering and `batch(drop_remainder=...)`."
        )
    spec_x, spec_y, spec_w = keras.utils.unpack_x_y_sample_weight(dataset.element_spec)
    for label, spec in (("x", spec_x), ("y", spec_y), ("sample_weight", spec_w)):
        for s in _flat(spec) if spec is not None else []:
            dtype = getattr(s, "dtype", None)
            if dtype is not None and not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
                raise TypeError(
                    f"Argument `{name}` must yield real numeric tensors. Received: {label} "
                    f"with dtype {dtype.name}"
                )
    if model is not None:
        shapes = [tuple(s.shape[1:]) if s.shape.rank is not None else None for s in _flat(spec_x)]
        if all(s is not None for s in shapes):
            _check_shapes_against_model(name, shapes, model, keys=_dict_keys(spec_x))
    try:
        first = next(iter(dataset.take(1)))
    except StopIteration:
        raise ValueError(
            f"Argument `{name}` must yield at least one batch. Received: an empty tf.data.Dataset"
        ) from None
    for label, part in zip(("x", "y", "sample_weight"), keras.utils.unpack_x_y_sample_weight(first)):
        if part is None:
            continue
        for tensor in _flat(part):
            if tensor.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(tensor))):
                raise ValueError(
                    f"Argument `{name}` must yield finite values (no NaN or Inf). Received: "
                    f"a first batch whose {label} holds non-finite values"
                )
            problem = _negative_weights(tensor.numpy()) if label == "sample_weight" else None
            if problem:
                raise ValueError(
                    f"Argument `{name}` must yield sample weights >= 0. Received: a first batch "
                    f"whose sample_weight has {problem}"
                )
        problem = label_problem(tf.nest.map_structure(np.asarray, part), model) if label == "y" else None
        if problem:
            raise ValueError(
                f"Argument `{name}` must yield {problem[0]}. Received: a first batch whose y has "
                f"{problem[1]}"
            )


def check_targets(model, x, y, name: str, loss_needs_targets: bool = True) -> None:
    """Refuse array inputs without targets, before any work, when the compiled loss needs them.

    Silent for datasets, a model without a compiled loss (trained by
    ``add_loss`` alone) and a ``compute_loss`` of its own (``loss_needs_targets``
    false, or the model's override), which may not need ``y``.
    """
    if (y is not None or x is None or is_dataset(x) or not compiled_loss_reads_targets(model)
            or not loss_needs_targets):
        return
    if name == "validation_data":
        raise ValueError("Argument `validation_data` must be `(x_val, y_val)` or `(x_val, y_val, "
                         f"sample_weight)`: the compiled loss ({model.loss!r}) needs targets. "
                         "Received: validation_data without targets")
    raise ValueError(f"Argument `y` must hold the targets: the compiled loss ({model.loss!r}) needs "
                     "them. Received: y=None")


def split_validation(x, y, sample_weight, fraction: float):
    """Hold out the last ``fraction`` of the examples (before shuffling), like ``fit``: the
    first ``floor(n * (1 - fraction))`` examples train."""
    n = len(_flat(x)[0])
    cut = int(math.floor(n * (1.0 - fraction)))
    if cut == 0 or cut == n:
        raise ValueError(
            "Argument `validation_split` must leave at least one example on each side. "
            f"Received: validation_split={fraction} with {n} examples"
        )

    def head(s):
        return None if s is None else tf.nest.map_structure(lambda a: np.asarray(a)[:cut], s)

    def tail(s):
        return None if s is None else tf.nest.map_structure(lambda a: np.asarray(a)[cut:], s)

    return (head(x), head(y), head(sample_weight)), (tail(x), tail(y), tail(sample_weight))


# Ops that draw random numbers from `seed`/`seed2` inputs (their positions in the
# op's inputs); both 0 means "unseeded": fresh random seeds in every process.
_SEEDED_OPS = {
    "ShuffleDataset": (2, 3), "ShuffleDatasetV3": (2, 3),
    "ShuffleAndRepeatDataset": (2, 3), "ShuffleAndRepeatDatasetV2": (2, 3),
    "RandomDataset": (0, 1), "RandomDatasetV2": (0, 1), "GlobalShuffleDataset": (1, 2),
    "SamplingDataset": (2, 3),
}


def _pipeline_problem(graph):
    """What makes the pipeline's element order differ between runs, or ``None``."""
    scopes = [list(graph.node)] + [list(f.node_def) for f in graph.library.function]
    for nodes in scopes:
        by_name = {node.name: node for node in nodes}

        def const(ref, by_name=by_name):
            node = by_name.get(ref.lstrip("^").split(":")[0])
            if node is None or node.op != "Const":
                return None
            return tf.make_ndarray(node.attr["value"].tensor)

        for node in nodes:
            if node.op in _SEEDED_OPS:
                positions = _SEEDED_OPS[node.op]
                if max(positions) < len(node.input):
                    seeds = [const(node.input[i]) for i in positions]
                    if all(s is not None and int(s) == 0 for s in seeds):
                        return (f"an unseeded random op ({node.op}): pass `seed=` to "
                                "`shuffle` (or `Dataset.random`, `sample_from_datasets`), or "
                                "call `keras.utils.set_random_seed` before building the dataset")
            deterministic = node.attr.get("deterministic")
            if deterministic is not None and deterministic.s == b"false":
                return (f"a non-deterministic op ({node.op} with deterministic=False): drop "
                        "`deterministic=False` from its `map`/`interleave`")
            sloppy = node.attr.get("sloppy")
            if sloppy is not None and sloppy.b:
                return f"a non-deterministic op ({node.op} with sloppy=True)"
    return None


def check_resumable(dataset, *, name: str = "x") -> None:
    """Check that a ``tf.data.Dataset`` yields the same batches when a run is resumed.

    Crash-safe resume replays the dataset's order from its random state, so the
    order must be a function of the seeds: every random op seeded (an explicit
    ``seed=`` or a global seed set before the dataset is built) and no op asked
    to be non-deterministic. Random ops that keep state *inside* ``map``
    functions (``tf.random.uniform``, ``py_function``, ``from_generator``) are
    caught later, when TensorFlow refuses to save the iterator state.

    Raises:
        TypeError: ``dataset`` is already distributed.
        ValueError: ``dataset`` holds an unseeded random op, or a
            ``deterministic=False`` op / option.
    """
    if isinstance(dataset, tf.distribute.DistributedDataset):
        raise TypeError(
            "Argument `checkpoint_dir` needs array inputs or a tf.data.Dataset that the Trainer "
            "distributes itself (its position can then be saved). Pass the dataset before "
            f"`experimental_distribute_dataset`. Received: {name} of type {type(dataset).__name__}"
        )
    if dataset.options().deterministic is False:
        raise ValueError(
            "Argument `checkpoint_dir` needs a dataset with a reproducible order. Received: "
            f"{name} with tf.data.Options.deterministic=False"
        )
    graph = dataset_graph_def(dataset)
    problem = None if graph is None else _pipeline_problem(graph)
    if problem is not None:
        raise ValueError(
            "Argument `checkpoint_dir` needs a dataset with a reproducible order, so that a "
            f"resumed run sees the batches an uninterrupted run would. Received: {name} with "
            f"{problem}."
        )
