"""Muon: momentum orthogonalized by Newton-Schulz, for every kernel of rank >= 2 (Jordan et al., 2024)."""

from __future__ import annotations

import math
import re

from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers import _adam_branch as adam_branch
from keras_trainkit.optimizers._base import (
    TrainkitOptimizer,
    bias_correction,
    check_beta,
    check_epsilon,
    deserialize_schedules,
    hyperparameter,
    serialize_schedule,
    state_dtype,
)
from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.shampoo import matrix_shape
from keras_trainkit.utils import validation
from keras_trainkit.utils.variables import variable_path, warn_unmatched_patterns

#: The quintic Newton-Schulz coefficients of Keller Jordan's Muon (optax's "standard").
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(matrix, steps: int, epsilon: float, coefficients=NS_COEFFICIENTS):
    """Approximately orthogonalize a ``(rows, cols)`` matrix: ``U S' V^T`` with ``S' ~ 1``.

    ``X = G / (||G||_F + epsilon)``, then ``steps`` times ``A = X X^T``,
    ``X <- a X + (b A + c A A) X``, on the wide orientation (a tall matrix is
    transposed first and back after, so ``A`` is the smaller Gram matrix).
    """
    a, b, c = coefficients
    transpose = matrix.shape[0] > matrix.shape[1]
    x = ops.transpose(matrix) if transpose else matrix
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + epsilon)
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.transpose(x) if transpose else x


def shape_scale(fan_in: int, fan_out: int, consistent_rms: float | None) -> float:
    """The factor on the orthogonalized update of a ``fan_in x fan_out`` kernel.

    ``None``: ``sqrt(max(1, fan_out / fan_in))`` (Jordan's width transfer,
    optax's default); a float ``r``: ``r * sqrt(max(fan_in, fan_out))``
    (Moonlight's consistent RMS, Liu et al. 2025; ``r = 0.2`` matches AdamW's
    update RMS).
    """
    if consistent_rms is None:
        return math.sqrt(max(1.0, fan_out / fan_in))
    return consistent_rms * math.sqrt(max(fan_in, fan_out))


@register(aliases=("muon",))
class Muon(adam_branch.AdamBranchMixin, TrainkitOptimizer):
    """Muon for every kernel of rank >= 2 (Dense and convolutions), AdamW for the rest.

    A kernel of shape ``(..., fan_out)`` is viewed as the matrix ``fan_in x
    fan_out`` with ``fan_in = prod(shape[:-1])``: a Dense kernel as it is, a
    Conv1D/2D/3D kernel ``(k..., in, out)`` as ``(prod(k) * in) x out`` (optax
    ``MuonDimensionNumbers(reduction_axis=(0, ..., n - 2), output_axis=n - 1)``).
    With ``t`` the update count (from 1)::

        m   = beta * m + (1 - beta) * g
        m^  = beta * m / (1 - beta**(t+1)) + (1 - beta) * g / (1 - beta**t)   (nesterov)
              m / (1 - beta**t)                                             (otherwise)
        O   = NewtonSchulz5(m^ as fan_in x fan_out)                           (ns_steps iterations)
        w  <- w - lr * (scale * O + wd * w)

    with ``scale = sqrt(max(1, fan_out / fan_in))`` (``consistent_rms=None``) or
    ``consistent_rms * sqrt(max(fan_in, fan_out))`` (Moonlight; ``0.2`` gives
    AdamW's update RMS, so AdamW's learning rate and decay carry over). The
    orthogonalization normalizes by the Frobenius norm plus ``epsilon`` and
    runs in float32 for float16/bfloat16 variables.

    Every other variable (rank < 2; embeddings when ``exclude_embeddings``,
    i.e. ``"embedding"`` in the variable path; paths matching
    ``exclude_layers``) gets AdamW with ``adam_beta_1``, ``adam_beta_2``,
    ``epsilon`` (outside the square root), learning rate ``adam_learning_rate``
    and decay ``adam_weight_decay``; with ``nesterov=True`` its momentum is
    Nesterov's too (NAdamW), as in optax.

    Differences, pinned in ``tests/optimizers/test_reference_muon.py`` (this
    class equals optax ``contrib.muon``):

    * Keras's ``keras.optimizers.Muon`` (a different class; ``"muon"`` in
      ``keras_trainkit.optimizers.get`` is this one, ``keras.optimizers.get``
      still gives Keras's) sends every variable that is not 2-D to AdamW, so a
      convolution kernel gets AdamW; it uses the sum-form momentum with no
      bias correction (the same direction after orthogonalization, up to the
      bias correction of the first steps), plain Adam for the rest, Moonlight
      scaling by default (``rms_rate=0.2``) and ``epsilon=1e-7``.
    * Weight decay is decoupled and scaled by each branch's own learning rate,
      from the weights before the step.

    Args:
        learning_rate: float >= 0, a schedule or a callable. Defaults to ``0.02``
            (Jordan's).
        beta: momentum decay, in ``[0, 1)``. Defaults to ``0.95``.
        nesterov: Nesterov momentum (both branches). Defaults to ``True``.
        ns_steps: Newton-Schulz iterations, an integer in 1..1000 (each is
            unrolled into the step). Defaults to ``5``.
        consistent_rms: ``None`` or a float ``> 0``: the scale above.
            Defaults to ``None``.
        epsilon: ``> 0``; added to the norm before the orthogonalization and
            to AdamW's denominator. Defaults to ``1e-8``.
        exclude_embeddings: send variables with ``"embedding"`` in their path
            to AdamW. Defaults to ``True``.
        exclude_layers: ``None`` or a list of regular expressions; variables
            whose path matches one get AdamW (e.g. the output layer's name).
        adam_learning_rate: ``None`` (the same as ``learning_rate``), a float
            or a schedule of the update count. Defaults to ``None``.
        adam_beta_1: AdamW momentum decay. Defaults to ``0.9``.
        adam_beta_2: AdamW second-moment decay. Defaults to ``0.999``.
        adam_weight_decay: ``None`` (the same as ``weight_decay``), a float >=
            0 or a schedule. Defaults to ``None``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not
            to decay (in either branch).
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, numpy as np, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3),
        ...                           keras.layers.Flatten(), keras.layers.Dense(1)])
        >>> opt = tk.optimizers.Muon(0.02, adam_learning_rate=1e-3, consistent_rms=0.2)
        >>> model.compile(optimizer=opt, loss="mse")
        >>> _ = model.fit(np.ones((8, 8, 8, 1)), np.zeros((8, 1)), verbose=0)

    References:
        Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein, "Muon: An
        optimizer for hidden layers in neural networks", 2024,
        https://kellerjordan.github.io/posts/muon/ ; Liu et al., "Muon is
        Scalable for LLM Training", 2025, https://arxiv.org/abs/2502.16982
        (consistent RMS).
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=0.02,
        beta=0.95,
        nesterov=True,
        ns_steps=5,
        consistent_rms=None,
        epsilon=1e-8,
        exclude_embeddings=True,
        exclude_layers=None,
        adam_learning_rate=None,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        adam_weight_decay=None,
        weight_decay=None,
        exclude_from_weight_decay=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            exclude_from_weight_decay=exclude_from_weight_decay,
            **kwargs,
        )
        self.beta = check_beta("beta", beta)
        self.nesterov = validation.check_bool("nesterov", nesterov)
        self.ns_steps = validation.check_unrolled_count("ns_steps", ns_steps)
        if consistent_rms is not None:
            consistent_rms = float(validation.check_positive("consistent_rms", consistent_rms))
        self.consistent_rms = consistent_rms
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.exclude_embeddings = validation.check_bool("exclude_embeddings", exclude_embeddings)
        self.exclude_layers = _check_patterns("exclude_layers", exclude_layers)
        self.adam_learning_rate = adam_branch.check_adam_learning_rate(adam_learning_rate)
        self.adam_beta_1 = check_beta("adam_beta_1", adam_beta_1)
        self.adam_beta_2 = check_beta("adam_beta_2", adam_beta_2)
        self.adam_weight_decay = adam_branch.check_adam_weight_decay(adam_weight_decay)

    def uses_muon(self, variable) -> bool:
        """Whether ``variable`` gets the Muon step (else AdamW)."""
        if len(variable.shape) < 2:
            return False
        path = variable_path(variable)
        if self.exclude_embeddings and "embedding" in path.lower():
            return False
        return not any(re.search(pattern, path) for pattern in self.exclude_layers or ())

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        warn_unmatched_patterns(type(self).__name__, "exclude_layers", self.exclude_layers, var_list)
        self._momentums = add_slot_variables(self, var_list, "momentum")
        self._velocities = [
            None if self.uses_muon(variable) else self.add_variable_from_reference(variable, "velocity")
            for variable in var_list
        ]

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        if self.uses_muon(variable):
            lr = ops.cast(learning_rate, dtype)
            direction = self._muon_direction(gradient, variable, self._momentums[index])
            decay = self._decay_rate(variable)
        else:
            lr = ops.cast(self._adam_learning_rate(learning_rate), dtype)
            direction = self._adam_direction(gradient, variable, self._momentums[index], self._velocities[index])
            decay = self._adam_decay_rate(variable)
        if decay is not None:
            direction = direction + decay * ops.cast(variable, dtype)
        self.assign_sub(variable, lr * direction)

    def _nesterov_average(self, gradient, momentum, beta, step, dtype):
        """Bias-corrected momentum, Nesterov's look-ahead form when ``nesterov`` (optax)."""
        if not self.nesterov:
            return momentum / bias_correction(beta, step, dtype)
        return beta * momentum / bias_correction(beta, step + 1.0, dtype) + (1.0 - beta) * gradient / bias_correction(
            beta, step, dtype
        )

    def _muon_direction(self, gradient, variable, momentum):
        dtype = state_dtype(variable.dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta = hyperparameter(self.beta, dtype)
        self.assign_add(momentum, (gradient - momentum) * (1.0 - beta))
        average = self._nesterov_average(gradient, momentum, beta, step, dtype)
        fan_in, fan_out = matrix_shape(variable.shape)
        matrix = ops.reshape(average, (fan_in, fan_out))
        orthogonal = newton_schulz(matrix, self.ns_steps, self.epsilon)
        scale = shape_scale(fan_in, fan_out, hyperparameter(self.consistent_rms, orthogonal.dtype))
        return ops.cast(ops.reshape(orthogonal * scale, variable.shape), dtype)

    def _adam_direction(self, gradient, variable, momentum, velocity):
        dtype = state_dtype(variable.dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2, epsilon = (
            hyperparameter(x, dtype) for x in (self.adam_beta_1, self.adam_beta_2, self.epsilon)
        )
        self.assign_add(momentum, (gradient - momentum) * (1.0 - beta_1))
        self.assign_add(velocity, (ops.square(gradient) - velocity) * (1.0 - beta_2))
        average = self._nesterov_average(gradient, momentum, beta_1, step, dtype)
        return average / (ops.sqrt(velocity / bias_correction(beta_2, step, dtype)) + epsilon)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "nesterov": self.nesterov,
                "ns_steps": self.ns_steps,
                "consistent_rms": self.consistent_rms,
                "epsilon": self.epsilon,
                "exclude_embeddings": self.exclude_embeddings,
                "exclude_layers": list(self.exclude_layers) if self.exclude_layers else None,
                "adam_learning_rate": serialize_schedule(self.adam_learning_rate),
                "adam_beta_1": self.adam_beta_1,
                "adam_beta_2": self.adam_beta_2,
                "adam_weight_decay": serialize_schedule(self.adam_weight_decay),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = deserialize_schedules(config, ("adam_learning_rate", "adam_weight_decay"), custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


def _check_patterns(name, value):
    """``None`` or a list of valid regular expressions."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"Argument `{name}` must be a list of strings (regular expressions searched in "
            f"variable paths), not {type(value).__name__}. Received: {name}={value!r}"
        )
    for pattern in value:
        validation.check_type(name, pattern, str)
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"Argument `{name}` must hold valid regular expressions ({error}). Received: {name}={value!r}"
            ) from None
    return list(value)
