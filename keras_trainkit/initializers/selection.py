"""Weight selection of Xu et al. (2024): initialize a small model from a larger one."""

from __future__ import annotations

import logging

import keras
import numpy as np

from keras_trainkit.utils.validation import check_in, check_type

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


def _weighted_layers(model):
    """Layers with weights in forward order; nested models are walked into."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def select_weights(small_model: keras.Model, large_model: keras.Model, method: str = "uniform",
                   seed: int = 0) -> dict[str, list[list[np.ndarray]]]:
    """Copy into ``small_model`` a consistent selection of ``large_model``'s weights.

    Weight selection (Xu et al. 2024): every weight tensor of the small model is
    the sub-tensor of the matching weight of the large (trained) model at index
    sets ``I_1 x ... x I_k``, one per dimension. The index set of a dimension
    depends only on its two sizes ``(D, d)``, so the units kept in the output of
    layer ``l`` are the units kept in the input of layer ``l + 1`` (and in the
    normalization statistics between them): the selected sub-network computes
    with the same channels throughout.

    Methods for choosing ``d`` of ``D`` indices:
    ``"uniform"`` (evenly spaced, ``floor(i * D / d)``; the paper's default),
    ``"first"`` (the first ``d``) and ``"random"`` (a sorted random subset,
    fixed per ``(D, d)`` by ``seed``).

    Layers are matched in order (their weights included); they must have the same
    class, the same number of weights and, per weight, the same rank with no
    dimension larger in the small model. Otherwise ``ValueError`` names the pair.

    Args:
        small_model: the built model to initialize (modified in place).
        large_model: the built, usually trained, model to select from.
        method: ``"uniform"``, ``"first"`` or ``"random"``.
        seed: seed of the ``"random"`` method.

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
    check_type("seed", seed, int)
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
    plan = []
    for small, large in zip(small_layers, large_layers):
        if type(small) is not type(large) or len(small.weights) != len(large.weights):
            raise ValueError(
                "The architectures do not correspond: matching layers must have the same class "
                f"and weights. Received: small layer {small.name!r} ({type(small).__name__}, "
                f"{len(small.weights)} weights) vs large layer {large.name!r} "
                f"({type(large).__name__}, {len(large.weights)} weights)"
            )
        per_weight = []
        for ws, wl in zip(small.weights, large.weights):
            ss, sl = tuple(ws.shape), tuple(wl.shape)
            if len(ss) != len(sl) or any(a > b for a, b in zip(ss, sl)):
                raise ValueError(
                    "The architectures do not correspond: each small weight must have the "
                    "large weight's rank and no larger dimension. Received: "
                    f"{small.name}/{ws.name} shape {ss} vs {large.name}/{wl.name} shape {sl}"
                )
            per_weight.append([_indices(b, a, method, seed) for a, b in zip(ss, sl)])
        plan.append((small, large, per_weight))
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
