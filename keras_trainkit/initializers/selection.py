"""Weight selection of Xu et al. (2024): initialize a small model from a larger one."""

from __future__ import annotations

import logging

import keras
import numpy as np

from keras_trainkit.utils.validation import check_in, check_seed, check_type

logger = logging.getLogger(__name__)

SELECTION_METHODS = ("uniform", "first", "random")


def _indices(large: int, small: int, method: str, rng_seed: int) -> np.ndarray:
    if method == "first":
        return np.arange(small)
    if method == "uniform":
        # Evenly spaced: element i of the small dimension is element floor(i * large / small).
        return (np.arange(small) * large) // small
    rng = np.random.default_rng([rng_seed, large, small])
    return np.sort(rng.choice(large, size=small, replace=False))


def _gate_count(layer) -> int:
    """How many gates a recurrent layer keeps side by side on the last axis of each of
    its weights (LSTM and ConvLSTM 4, GRU 3; a ``Bidirectional`` layer as its
    direction), else 1."""
    layer = getattr(layer, "forward_layer", layer)
    if isinstance(layer, (keras.layers.ConvLSTM1D, keras.layers.ConvLSTM2D, keras.layers.ConvLSTM3D)):
        return 4
    cell = getattr(layer, "cell", None)
    if isinstance(cell, keras.layers.LSTMCell):
        return 4
    return 3 if isinstance(cell, keras.layers.GRUCell) else 1


def _part_indices(large_parts, small_parts, method: str, rng_seed: int) -> np.ndarray:
    """The index set of an axis made of parts side by side (a concatenation's inputs, a
    recurrent layer's gates): each part selected on its own, at its offset."""
    offsets = np.cumsum((0,) + tuple(large_parts[:-1]))
    return np.concatenate([offset + _indices(large, small, method, rng_seed)
                           for offset, small, large in zip(offsets, small_parts, large_parts)])


def _weighted_layers(model):
    """Layers with weights in forward order; nested models are walked into."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def _producers(model) -> dict:
    """``{id(output tensor): layer}`` over the model's layers, nested models walked into."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.update(_producers(layer))
        try:
            found[id(layer.output)] = layer
        except (AttributeError, ValueError):  # no single output (a shared layer)
            continue
    return found


def _has_kernel(layer) -> bool:
    return any(w.name in ("kernel", "depthwise_kernel", "embeddings")
               for w in layer.weights)


def _joins_features(layer) -> bool:
    """Whether ``layer`` concatenates parts along the feature (last) axis: a
    ``Concatenate`` there, or a ``Bidirectional`` layer's two directions."""
    if isinstance(layer, keras.layers.Bidirectional):
        return layer.merge_mode == "concat"
    if not isinstance(layer, keras.layers.Concatenate):
        return False
    return layer.axis in (-1, len(layer.output.shape) - 1)


def _feature_source(layer, producers):
    """The ``Flatten``, last-axis ``Concatenate`` or ``Bidirectional`` layer that made
    ``layer``'s input features, followed back through layers that keep the features apart (dropout,
    activations, normalization); ``None`` if its input comes from neither."""
    try:
        tensor = layer.input
    except (AttributeError, ValueError):
        return None
    while id(tensor) in producers:
        producer = producers[id(tensor)]
        if isinstance(producer, keras.layers.Flatten) or _joins_features(producer):
            return producer
        try:
            before = producer.input
        except (AttributeError, ValueError):
            return None
        if (not hasattr(before, "shape") or _has_kernel(producer)
                or tuple(before.shape) != tuple(tensor.shape)):
            return None  # an input layer, several inputs, or features mixed or moved
        tensor = before
    return None


def _flattened_indices(large_shape, small_shape, method: str, seed: int) -> np.ndarray:
    """The flat indices of a flattened feature axis: every original axis selected on
    its own (so a ``Flatten`` after a convolution keeps the convolution's channels at
    every position), in the flattened (C) order of the small shape."""
    sets = [_indices(large, small, method, seed) for large, small in zip(large_shape, small_shape)]
    return np.ravel_multi_index(np.ix_(*sets), large_shape).ravel()


_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def _feature_axes(layer, weights) -> list[int | None]:
    """Per weight, the axis that runs over the layer's input features, or ``None``: a
    ``Dense`` kernel's first axis, a convolution kernel's input-channel axis (the
    next-to-last; the last for a transposed one); every vector of a layer without a
    kernel (normalization's scale, offset and statistics)."""
    if not _has_kernel(layer):
        return [0 if len(w.shape) == 1 else None for w in weights]
    axes = []
    for w in weights:
        rank = len(w.shape)
        if w.name not in ("kernel", "depthwise_kernel") or rank < 2:
            axes.append(None)
        else:
            axes.append(rank - 1 if isinstance(layer, _TRANSPOSED) else rank - 2)
    return axes


def _weight_indices(small, large, method: str, seed: int, features) -> list:
    """The index sets of each weight of the layer pair (``features``: the index set of
    the input features a ``Flatten`` or ``Concatenate`` made, or ``None``)."""
    per_weight = []
    gates = _gate_count(small)
    for ws, wl, axis in zip(small.weights, large.weights, _feature_axes(small, small.weights)):
        ss, sl = tuple(ws.shape), tuple(wl.shape)
        if len(ss) != len(sl) or any(a > b for a, b in zip(ss, sl)):
            raise ValueError(
                "The architectures do not correspond: each small weight must have the "
                "large weight's rank and no larger dimension. Received: "
                f"{small.name}/{ws.name} shape {ss} vs {large.name}/{wl.name} shape {sl}"
            )
        sets = [_indices(b, a, method, seed) for a, b in zip(ss, sl)]
        if gates > 1 and ss[-1] % gates == 0 and sl[-1] % gates == 0:
            sets[-1] = _part_indices((sl[-1] // gates,) * gates, (ss[-1] // gates,) * gates, method, seed)
        if features is not None and axis is not None:
            sets[axis] = features
        per_weight.append(sets)
    return per_weight


def _feature_indices(small, large, small_producers, large_producers, method: str, seed: int):
    """The index set of the pair's input features where a ``Flatten`` or ``Concatenate``
    made them (their layouts checked to correspond), else ``None``: a flattened map's
    axes each selected on its own (:func:`_flattened_indices`), a concatenation's parts
    each selected on its own at its offset."""
    sources = (_feature_source(small, small_producers), _feature_source(large, large_producers))
    if sources[0] is None or sources[1] is None:
        return None
    layouts = [_layout(source) for source in sources]
    (kind, small_parts), (large_kind, large_parts) = layouts
    if (kind != large_kind or len(small_parts) != len(large_parts)
            or any(a is None or b is None or a > b for a, b in zip(small_parts, large_parts))):
        raise ValueError(
            "The architectures do not correspond: the features flattened or concatenated into "
            "matching layers must have the same layout and no larger part in the small model. "
            f"Received: {small.name} {kind} {small_parts} vs {large.name} {large_kind} {large_parts}")
    if kind == "flattens":
        return _flattened_indices(large_parts, small_parts, method, seed)
    return _part_indices(large_parts, small_parts, method, seed)


def _layout(source) -> tuple[str, tuple]:
    """``("flattens", the flattened shape)`` of a ``Flatten``, ``("concatenates parts of
    sizes", their feature sizes)`` of a ``Concatenate`` or ``Bidirectional`` layer."""
    if isinstance(source, keras.layers.Flatten):
        return "flattens", tuple(source.input.shape[1:])
    if isinstance(source, keras.layers.Bidirectional):
        return "concatenates parts of sizes", (source.output.shape[-1] // 2,) * 2
    return "concatenates parts of sizes", tuple(t.shape[-1] for t in source.input)


def select_weights(small_model: keras.Model, large_model: keras.Model, method: str = "uniform",
                   seed: int = 0) -> dict[str, list[list[np.ndarray]]]:
    """Copy into ``small_model`` a consistent selection of ``large_model``'s weights.

    Weight selection (Xu et al. 2024): every weight tensor of the small model is
    the sub-tensor of the matching weight of the large (trained) model at index
    sets ``I_1 x ... x I_k``, one per dimension. The index set of a dimension
    depends only on its two sizes ``(D, d)``, so the units kept in the output of
    layer ``l`` are the units kept in the input of layer ``l + 1`` (and in the
    normalization statistics between them): the selected sub-network computes
    with the same channels throughout. Where a ``Flatten`` turns a ``(length,
    channels)`` map into the input features of a ``Dense`` layer (or of a
    normalization before it), the flattened axis is selected as the product of
    the map's own axes, ``I_length x I_channels`` in flattened order, so the
    ``Dense`` layer reads the channels the convolution kept, at every position
    (for ``"first"`` and ``"random"``, and for ``"uniform"`` where the lengths
    differ, an index set of the flattened size alone would not). Where a
    ``Concatenate`` (or a ``Bidirectional`` layer, its two directions) joins parts
    along the feature axis, the layer reading them
    selects each part on its own at its offset, so it reads the units each
    branch kept (the parts must correspond, in order, with none larger in the
    small model). A recurrent
    layer's gates (``LSTM``/``ConvLSTM``: 4, ``GRU``: 3) sit side by side on the
    last axis of its weights: that axis is selected gate by gate, the same units
    in every gate's block (for ``"first"`` and ``"random"`` an index set of the
    whole axis would take other gates' columns, e.g. a small LSTM's forget gate
    from the large one's input gate; ``"uniform"`` gives the same indices either way).

    Methods for choosing ``d`` of ``D`` indices:
    ``"uniform"`` (evenly spaced, ``floor(i * D / d)``; the paper's default,
    equal to the authors' ``i * (D // d)`` where ``d`` divides ``D``: their code's
    other branch, ``round(linspace(0, D, d))``, ends past the last index),
    ``"first"`` (the first ``d``) and ``"random"`` (a sorted random subset,
    fixed per ``(D, d)`` by ``seed``).

    Layers are matched in order (their weights included); they must have the same
    class, the same number of weights and, per weight, the same rank with no
    dimension larger in the small model. Otherwise ``ValueError`` names the pair.

    Args:
        small_model: the built model to initialize (modified in place).
        large_model: the built, usually trained, model to select from.
        method: ``"uniform"``, ``"first"`` or ``"random"``.
        seed: seed of the ``"random"`` method (an integer in ``[0, 2**32 - 1]``).

    Returns:
        ``{small layer name: [index arrays of each dimension, per weight]}``,
        the selection that was applied.

    Example:
        >>> import keras
        >>> big = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32), keras.layers.Dense(4)])
        >>> small = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(4)])
        >>> selection = select_weights(small, big)
        >>> [int(i) for i in selection[small.layers[0].name][0][1][:3]]
        [0, 4, 8]

    Reference:
        Z. Xu, Y. Chen, K. Vishniakov, Y. Yin, Z. Shen, T. Darrell, L. Liu, Z. Liu,
        "Initializing Models with Larger Ones", ICLR 2024.
    """
    check_type("small_model", small_model, keras.Model)
    check_type("large_model", large_model, keras.Model)
    check_in("method", method, SELECTION_METHODS)
    seed = check_seed("seed", seed, optional=False)
    for name, model in (("small_model", small_model), ("large_model", large_model)):
        if not model.built:
            raise ValueError(f"Argument `{name}` must be built (call it once or give it an Input). "
                             f"Received: {name}={model.name!r}")
    small_layers, large_layers = _weighted_layers(small_model), _weighted_layers(large_model)
    if len(small_layers) != len(large_layers):
        raise ValueError(
            "The architectures do not correspond: the models have different numbers of layers "
            f"with weights. Received: small_model with {len(small_layers)} "
            f"({[layer.name for layer in small_layers]}), large_model with {len(large_layers)} "
            f"({[layer.name for layer in large_layers]})"
        )
    small_producers, large_producers = _producers(small_model), _producers(large_model)
    plan = []
    for small, large in zip(small_layers, large_layers):
        if type(small) is not type(large) or len(small.weights) != len(large.weights):
            raise ValueError(
                "The architectures do not correspond: matching layers must have the same class "
                f"and weights. Received: small layer {small.name!r} ({type(small).__name__}, "
                f"{len(small.weights)} weights) vs large layer {large.name!r} "
                f"({type(large).__name__}, {len(large.weights)} weights)"
            )
        features = _feature_indices(small, large, small_producers, large_producers, method, seed)
        plan.append((small, large, _weight_indices(small, large, method, seed, features)))
    selection = {}
    for small, large, per_weight in plan:
        for ws, wl, index_sets in zip(small.weights, large.weights, per_weight):
            value = keras.ops.convert_to_numpy(wl)
            if index_sets:
                value = value[np.ix_(*index_sets)]
            ws.assign(value.astype(ws.dtype))
        selection[small.name] = per_weight
        logger.debug("select_weights: %s <- %s", small.name, large.name)
    return selection
