"""Layer-wise learning rates: per-variable multipliers of the inner optimizer's step."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

import keras
from keras import ops

from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.wrapper import (
    OptimizerWrapper,
    check_inner_ema_off,
    check_no_weight_reset_inside,
)
from keras_trainkit.utils import validation as v
from keras_trainkit.utils.variables import listed_paths, variable_path


def match_multiplier(path: str, multipliers: Mapping[str, float], default: float = 1.0) -> float:
    """The factor for a variable path: the first pattern (in mapping order) that matches.

    Patterns are shell-style (``fnmatch``, case-sensitive) and match the
    variable's ``path`` either whole or after any ``/``: ``"head/*"`` matches
    ``"head/kernel"`` and ``"model/head/bias"`` but not ``"myhead/kernel"``.

    Example:
        >>> match_multiplier("model/head/kernel", {"head/*": 10.0})
        10.0
    """
    pattern = matching_pattern(path, multipliers)
    return float(default if pattern is None else multipliers[pattern])


def matching_pattern(path: str, patterns) -> str | None:
    """The first of ``patterns`` matching ``path`` (see :func:`match_multiplier`), else ``None``."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern):
            return pattern
    return None


def _checked_resolved_paths(resolved_paths, multipliers) -> dict:
    """``resolved_paths`` as a dict, each value ``None`` or a pattern of ``multipliers``."""
    if resolved_paths is None:
        return {}
    if not isinstance(resolved_paths, Mapping) or not all(
            isinstance(path, str) and (pattern is None or pattern in multipliers)
            for path, pattern in resolved_paths.items()):
        raise ValueError("Argument `resolved_paths` must map variable paths to a pattern of `multipliers` "
                         f"or None (get_config writes it). Received: resolved_paths={resolved_paths!r}")
    return dict(resolved_paths)


def _layer_patterns(layer) -> list[str]:
    """Patterns matching exactly ``layer``'s trainable variables: ``"<name>/*"`` where their
    paths start with its name, else their paths (``fnmatch`` characters escaped)."""
    paths = [variable_path(variable) for variable in layer.trainable_weights]
    if all(fnmatch.fnmatchcase(path, f"{layer.name}/*") for path in paths):
        return [layer.name]
    return [re.sub(r"([*?[])", r"[\1]", path) for path in paths]


def depth_decay_multipliers(layers, decay: float) -> dict[str, float]:
    """Layer-wise learning-rate decay: ``{pattern: decay ** (depth - 1 - i)}``.

    The deepest level (the head) keeps factor 1, the one below ``decay``, ...,
    the input level ``decay ** (depth - 1)``, as used for fine-tuning
    (Howard & Ruder 2018's discriminative fine-tuning; Clark et al. 2020 and
    Bao et al. 2022's layer-wise learning-rate decay).

    Args:
        layers: a ``keras.Model`` (its top-level layers holding trainable
            weights, in order, are the levels) or a sequence from input to
            output whose items are a layer name / pattern or a list of them (one
            depth level, e.g. all layers of one transformer block).
        decay: factor in ``(0, 1]``.

    Returns:
        A mapping for :class:`LayerwiseLearningRate`'s ``multipliers``, with
        patterns ``"<layer name>/*"``. For a model, a layer whose variables'
        paths do not start with its name (a functional sub-model such as a
        ``keras.applications`` backbone: Keras names its variables after the
        layers inside it) gets its variables' paths as patterns instead.

    Example:
        >>> depth_decay_multipliers(["embed", ["block1_attn", "block1_mlp"], "head"], 0.5)
        {'embed/*': 0.25, 'block1_attn/*': 0.5, 'block1_mlp/*': 0.5, 'head/*': 1.0}
    """
    v.check_number("decay", decay, minimum=0.0, maximum=1.0, min_inclusive=False)
    if isinstance(layers, keras.Model):
        levels = [_layer_patterns(layer) for layer in layers.layers if layer.trainable_weights]
    elif isinstance(layers, Sequence) and not isinstance(layers, str):
        levels = [[item] if isinstance(item, str) else list(item) for item in layers]
    else:
        raise TypeError(
            "Argument `layers` must be a keras.Model or a sequence of layer names. "
            f"Received: layers={layers!r}"
        )
    depth = len(levels)
    out = {}
    for i, level in enumerate(levels):
        for name in level:
            v.check_type("layers", name, str)
            pattern = name if any(c in name for c in "*?[/") else f"{name}/*"
            out[pattern] = float(decay) ** (depth - 1 - i)
    return out


@register(aliases=["layerwise_lr"])
class LayerwiseLearningRate(OptimizerWrapper):
    """Per-layer learning-rate multipliers on top of any optimizer and schedule.

    Each variable ``w`` gets a factor ``f`` from ``multipliers`` (first matching
    pattern, else ``default``; see :func:`match_multiplier`). The inner
    optimizer makes its usual update ``w' = inner_update(w, g)`` (with its own
    learning rate, schedule, clipping and decoupled weight decay), and the
    wrapper scales that whole update delta::

        w <- w + f * (inner_update(w, g) - w)

    What is scaled is the *change of the weight*: for SGD (with or without
    momentum) and Adam-type optimizers this is exactly training that variable
    with learning rate ``f * lr``, and it scales decoupled weight decay too,
    as torch's parameter groups do (``lr * wd`` per group). The inner
    optimizer's slots (momentum, moments) are not scaled. Variables with
    ``f == 1`` cost nothing; ``f == 0`` freezes a variable. ``default`` may be
    scheduled at run time with ``control.schedule_hyperparameter(opt, "default")``;
    the variables it covers are then scaled at every step, whatever its value.

    ``use_ema`` on the inner optimizer is refused (``ValueError``): Keras
    averages inside the inner step, before the wrapper scales it, so the
    average (which ``finalize_variable_values`` puts in the model) would
    follow the unscaled weights and move a frozen variable. Use the callback
    ``keras_trainkit.callbacks.SWA`` to average weights, or drop it. A
    ``Lookahead`` or ``ScheduleFree`` inside is refused too (the weights they
    set from their own state would be scaled as a step): write
    ``Lookahead(LayerwiseLearningRate(...))`` or ``ScheduleFree(LayerwiseLearningRate(...))``.

    The base learning rate stays the inner optimizer's (``learning_rate`` is
    delegated), so schedules and callbacks that change it at run time
    (``LearningRateScheduler``, ``ReduceLROnPlateau``) act on every layer,
    with the multipliers kept.

    Args:
        optimizer: the inner optimizer: an instance, a name or a config dict.
        multipliers: mapping from ``fnmatch`` patterns on variable paths (e.g.
            ``"head/*"``, ``"*bias"``) to factors ``>= 0``; the first match wins.
            :func:`depth_decay_multipliers` builds one for layer-wise decay.
        default: factor of variables no pattern matches, ``>= 0``. Defaults to 1.
        resolved_paths: written by ``get_config`` once built, not by hand: the
            pattern (or ``None``) each variable path took, ``{path: pattern}``.
            A loaded model's variable whose path ends one of them (after a
            ``/``; Keras's ``load_model`` drops the name of a Sequential
            sub-model that was built by a call) takes that path's pattern.
            Otherwise each pattern must match a variable at ``build``
            (``ValueError``): a pattern matching none would leave the layers it
            names at ``default``.
        name: the optimizer's name.
        **kwargs: ``loss_scale_factor``.

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import LayerwiseLearningRate
        >>> inputs = keras.Input((4,))
        >>> x = keras.layers.Dense(8, name="body")(inputs)
        >>> model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
        >>> opt = LayerwiseLearningRate(keras.optimizers.SGD(0.01), {"body/*": 0.1})
        >>> model.compile(optimizer=opt, loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    References:
        Howard & Ruder, "Universal Language Model Fine-tuning for Text
        Classification", ACL 2018 (discriminative fine-tuning); Clark et al.,
        "ELECTRA", ICLR 2020 (layer-wise learning-rate decay).
    """

    def __init__(self, optimizer, multipliers=None, default=1.0, name=None, resolved_paths=None, **kwargs):
        multipliers = {} if multipliers is None else multipliers
        if not isinstance(multipliers, Mapping):
            raise TypeError(
                "Argument `multipliers` must be a mapping from name patterns to factors. "
                f"Received: multipliers={multipliers!r}"
            )
        for pattern, factor in multipliers.items():
            v.check_type("multipliers", pattern, str)
            v.check_non_negative(f"multipliers[{pattern!r}]", factor)
        v.check_non_negative("default", default)
        super().__init__(optimizer, name=name, **kwargs)
        check_inner_ema_off("LayerwiseLearningRate", self.inner_optimizer, "the wrapper scales the update")
        check_no_weight_reset_inside(
            "LayerwiseLearningRate",
            self.inner_optimizer,
            "LayerwiseLearningRate scales the change of the weights",
        )
        self.multipliers = {str(k): float(f) for k, f in multipliers.items()}
        self.default = float(default)
        self.resolved_paths = _checked_resolved_paths(resolved_paths, self.multipliers)

    def build(self, variables):
        """Build, resolve each variable's pattern, and refuse a pattern that matches none."""
        super().build(variables)
        paths = [variable_path(variable) for variable in variables]
        self.resolved_paths = {path: self._pattern_for(path) for path in paths}
        unmatched = [pattern for pattern in self.multipliers if pattern not in self.resolved_paths.values()]
        if unmatched:
            raise ValueError(
                f"LayerwiseLearningRate: the pattern(s) {', '.join(map(repr, unmatched))} of `multipliers` "
                f"match none of the {len(paths)} variables being trained (paths {listed_paths(paths)}), so the layers "
                f"they name would train at `default`={float(self.default):g}. Patterns match Keras's "
                "variable paths: the variables of a functional sub-model (a keras.applications backbone) "
                "are named after the layers inside it, not after the sub-model. Name those layers, or "
                "build the mapping from the model with depth_decay_multipliers(model, ...); a saved "
                "model loads with keras.saving.load_model(path, compile=False). "
                f"Received: multipliers={self.multipliers!r}")

    def _pattern_for(self, path):
        """The pattern for a variable path: a recorded path's (see ``resolved_paths``), else the
        first pattern that matches it, else ``None``."""
        if path in self.resolved_paths:
            return self.resolved_paths[path]
        recorded = {pattern for full, pattern in self.resolved_paths.items() if full.endswith("/" + path)}
        if len(recorded) == 1:
            return recorded.pop()
        return matching_pattern(path, self.multipliers)

    def factor_for(self, variable):
        """The multiplier applied to ``variable``'s update.

        A float, or the variable of ``default`` once it is scheduled
        (``control.schedule_hyperparameter(optimizer, "default")``), which a
        compiled step reads at run time.
        """
        pattern = self._pattern_for(variable_path(variable))
        if pattern is not None:
            return self.multipliers[pattern]
        return self.default if isinstance(self.default, keras.Variable) else float(self.default)

    def wrapped_apply(self, grads, variables):
        scaled = []
        for var, grad in zip(variables, grads):
            factor = self.factor_for(var)
            # A scheduled factor is always applied: its value at trace time says nothing
            # about the values it takes later.
            if grad is not None and (isinstance(factor, keras.Variable) or factor != 1.0):
                scaled.append((var, factor, ops.copy(var)))
        super().wrapped_apply(grads, variables)
        for var, factor, before in scaled:
            after = ops.copy(var)
            var.assign(before + ops.cast(factor, after.dtype) * (after - before))

    def get_config(self):
        config = super().get_config()
        config.update({"multipliers": dict(self.multipliers), "default": self.default,
                       "resolved_paths": dict(self.resolved_paths) or None})
        return config
