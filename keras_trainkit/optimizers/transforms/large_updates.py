"""``SkipLargeUpdates``: skip a step whose gradient norm is far above its running statistics."""

from __future__ import annotations

from keras import ops

from keras_trainkit.optimizers._sparse import densify_all
from keras_trainkit.optimizers.transforms._registry import register
from keras_trainkit.optimizers.transforms.base import global_norm
from keras_trainkit.optimizers.transforms.skipping import SkipTransform
from keras_trainkit.utils.validation import check_condition, check_number, check_positive, check_probability


@register
class SkipLargeUpdates(SkipTransform):
    """Skip an update whose gradient norm is far above the norms of recent steps.

    With ``n = ||g||`` the global L2 norm of the step's gradients (in float32;
    sparse gradients are summed into their dense rows first), the step is
    applied when all of these hold, and skipped otherwise:

    * ``n`` is finite;
    * absolute rule (``max_norm``): ``n**2 < max_norm**2``, exactly optax's
      ``skip_large_updates(max_squared_norm=max_norm**2)``;
    * relative rule (``threshold``): ``n <= mean + threshold * std`` where
      ``mean`` and ``std`` are exponentially weighted running statistics of
      the norms of the *applied* steps. The rule is off while fewer than
      ``warmup_steps`` steps have been applied, and is waived once
      ``max_consecutive`` steps in a row were skipped (a lasting change of the
      norm is a new regime, not a spike; ``None``: never waived).

    Running statistics (West 1979's exponentially weighted mean and variance,
    decay ``beta``), updated on applied steps only, so a skipped norm never
    enters them; the first applied step sets ``mean = n``, ``var = 0``, then::

        delta = n - mean
        mean <- mean + (1 - beta) * delta
        var  <- beta * (var + (1 - beta) * delta**2)
        std  =  sqrt(var)

    On a skipped step :class:`GradientChain` leaves the weights, the optimizer
    slots, the step counter and later transforms' state unchanged (the skip
    contract). Place it first in a chain, before any clipping, so it sees the
    raw gradients. Statistics: ``grad_norm`` (this step's ``n``),
    ``norm_mean``, ``norm_variance``, ``applied_steps``, ``skipped_steps``,
    ``consecutive_skips``. Under ``mixed_float16`` it sees the gradients as the
    chain receives them (``TransformedOptimizer`` inside a
    ``LossScaleOptimizer`` receives unscaled ones).

    Args:
        threshold: how many running standard deviations above the running mean
            a norm may be (a float > 0), or ``None`` for no relative rule.
        max_norm: the absolute ceiling on the norm (a float > 0), or ``None``.
        beta: the decay of the running mean and variance, in ``[0, 1)``
            (``0.99``: about the last 100 applied steps).
        warmup_steps: applied steps before the relative rule starts (an
            integer >= 1; the running variance needs two norms).
        max_consecutive: consecutive skips after which the relative rule lets
            a step through (an integer >= 1), or ``None``.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import SkipLargeUpdates, TransformedOptimizer
        >>> skip = SkipLargeUpdates(threshold=6.0, warmup_steps=100)
        >>> opt = TransformedOptimizer(keras.optimizers.Adam(1e-3), [skip])
        >>> w = keras.Variable([1.0, 1.0])
        >>> opt.apply([keras.ops.convert_to_tensor([0.1, 0.1])], [w])
        >>> int(skip.applied_steps), int(skip.skipped_steps)
        (1, 0)

    Paper: optax's ``skip_large_updates`` (Babuschkin et al., "The DeepMind
    JAX Ecosystem", 2020) for the absolute rule; the relative rule is the
    running-statistics spike test of Chowdhery et al., "PaLM", 2022 (Sec. 5.1
    skips batches around loss spikes) applied to the gradient norm; the
    weighted variance is West, "Updating mean and variance estimates", CACM 1979.
    """

    def __init__(self, threshold=6.0, max_norm=None, beta=0.99, warmup_steps=100, max_consecutive=20,
                 name=None):
        super().__init__(name=name)
        if threshold is not None:
            threshold = float(check_positive("threshold", threshold))
        if max_norm is not None:
            max_norm = float(check_positive("max_norm", max_norm))
        check_condition(
            "threshold", threshold, threshold is not None or max_norm is not None,
            "must be set when `max_norm` is None (with both None nothing is ever skipped)",
        )
        self.threshold = threshold
        self.max_norm = max_norm
        self.beta = float(check_probability("beta", beta))
        self.warmup_steps = int(check_number("warmup_steps", warmup_steps, minimum=1, integer=True))
        if max_consecutive is not None:
            max_consecutive = int(check_number("max_consecutive", max_consecutive, minimum=1, integer=True))
        self.max_consecutive = max_consecutive

    def build(self, variables):
        super().build(variables)
        self.grad_norm = self.add_variable("grad_norm", statistic=True, per_step=True)
        self.norm_mean = self.add_variable("norm_mean", statistic=True)
        self.norm_variance = self.add_variable("norm_variance", statistic=True)
        self.applied_steps = self.add_variable("applied_steps", dtype="int32", statistic=True)
        self.skipped_steps = self.add_variable("skipped_steps", dtype="int32", statistic=True)
        self.consecutive_skips = self.add_variable("consecutive_skips", dtype="int32", statistic=True)

    def decide(self, grads, variables):
        if not self.built:
            self.build(variables or [])
        norm = global_norm(densify_all(grads, variables))  # rows of a tf.IndexedSlices summed first
        # The state as tensors (``.value``): JAX refuses Keras variables inside ops.where.
        state = {name: getattr(self, name).value for name in
                 ("norm_mean", "norm_variance", "applied_steps", "skipped_steps", "consecutive_skips")}
        apply = ops.logical_and(ops.isfinite(norm), self._relative_rule_holds(norm, state))
        if self.max_norm is not None:
            apply = ops.logical_and(apply, ops.less(ops.square(norm), self.max_norm**2))
        self._record(norm, apply, state)
        return apply

    def _relative_rule_holds(self, norm, state):
        """``n <= mean + threshold * std``, or the rule is not in force (warm-up, waived, off)."""
        if self.threshold is None:
            return ops.ones((), "bool")
        limit = state["norm_mean"] + self.threshold * ops.sqrt(state["norm_variance"])
        holds = ops.logical_or(ops.less(state["applied_steps"], self.warmup_steps), ops.less_equal(norm, limit))
        if self.max_consecutive is not None:
            holds = ops.logical_or(holds, ops.greater_equal(state["consecutive_skips"], self.max_consecutive))
        return holds

    def _record(self, norm, apply, state):
        """Update the running statistics with an applied norm; count a skipped one."""
        mean, variance = state["norm_mean"], state["norm_variance"]
        first = ops.equal(state["applied_steps"], 0)
        delta = norm - mean
        new_mean = ops.where(first, norm, mean + (1.0 - self.beta) * delta)
        new_variance = ops.where(first, 0.0, self.beta * (variance + (1.0 - self.beta) * ops.square(delta)))
        self.norm_mean.assign(ops.where(apply, new_mean, mean))
        self.norm_variance.assign(ops.where(apply, new_variance, variance))
        applied = ops.cast(apply, "int32")
        self.applied_steps.assign(state["applied_steps"] + applied)
        self.skipped_steps.assign(state["skipped_steps"] + (1 - applied))
        self.consecutive_skips.assign(ops.where(apply, 0, state["consecutive_skips"] + 1))
        self.grad_norm.assign(norm)

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "max_norm": self.max_norm,
            "beta": self.beta,
            "warmup_steps": self.warmup_steps,
            "max_consecutive": self.max_consecutive,
        }
