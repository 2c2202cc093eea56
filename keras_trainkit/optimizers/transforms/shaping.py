"""Transforms that gate, perturb or re-center gradients: SkipNonFinite, GradientNoise,
GradientCentralization."""

from __future__ import annotations

import logging
import math
import re

import keras
from keras import ops

from keras_trainkit.optimizers.transforms._registry import register
from keras_trainkit.optimizers.transforms.base import GradientTransform, variable_path
from keras_trainkit.optimizers.transforms.clipping import _check_patterns
from keras_trainkit.utils.validation import check_non_negative, check_number

logger = logging.getLogger(__name__)


class NonFiniteGradientError(RuntimeError):
    """Raised when ``SkipNonFinite`` skipped ``max_consecutive`` steps in a row."""


def _all_finite(grads):
    checks = [ops.all(ops.isfinite(g)) for g in grads if g is not None]
    if not checks:
        return ops.convert_to_tensor(True)
    return ops.all(ops.stack(checks))


def _in_xla_context() -> bool:
    """Whether a TensorFlow graph being traced is compiled by XLA (``jit_compile=True``);
    always ``False`` on other backends."""
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without these internals
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


def _normal_noise(shape, variance, seed_generator):
    """``sqrt(variance) * N(0, 1)`` float32 samples of ``shape``, one seed drawn from ``seed_generator``.

    Box-Muller written in ``keras.ops`` on ``keras.random.uniform``: for a pair
    of uniforms ``u1, u2`` in ``[0, 1)``, ``r = sqrt(-2 variance log(1 - u1))``
    and ``theta = 2 pi u2`` give the two independent normals ``r cos(theta)``
    and ``r sin(theta)`` (exact, not an approximation; ``1 - u1`` is in
    ``(0, 1]``, so the log is finite). ``variance`` is folded into ``r``, which
    saves a full-size multiply. On one CPU thread without XLA this costs about
    15 ns per sample against 22 ns for ``keras.random.normal``, whose TensorFlow
    kernel runs the same transform one scalar at a time (the uniforms alone
    cost about 7.5 ns).
    """
    size = math.prod(shape)
    half = (size + 1) // 2
    u = keras.random.uniform((2, half), dtype="float32", seed=seed_generator)
    radius = ops.sqrt(ops.log(1.0 - u[0]) * (-2.0 * variance))
    theta = (2.0 * math.pi) * u[1]
    noise = ops.concatenate([radius * ops.cos(theta), radius * ops.sin(theta)], axis=0)
    if size % 2:
        noise = noise[:size]
    return ops.reshape(noise, shape)


def _normal_noise_xla(shape, variance, seed_generator):
    """As ``_normal_noise``, inside an XLA-compiled TensorFlow graph (``jit_compile=True``).

    TensorFlow is needed here, to name the bit generator, which ``keras.random``
    does not expose: its default, ``alg="auto_select"``, costs about 900 ns per
    sample on XLA:CPU (600 ms per step for a 670k-weight MLP; its HLO carries
    an extra Philox key-scrambling computation that XLA seems to redo per
    element). ``alg="threefry"`` gives XLA's own Box-Muller normal at about
    24 ns, faster than the ``keras.ops`` Box-Muller above under XLA (about 35 ns).
    """
    import tensorflow as tf

    seed = tf.cast(tf.math.floormod(seed_generator.next(), tf.int32.max - 1), tf.int32)
    return ops.sqrt(variance) * tf.random.stateless_normal(shape, seed=seed, dtype="float32", alg="threefry")


class _RaiseWhenStopped(keras.callbacks.Callback):
    """Raise ``NonFiniteGradientError`` after the batch in which ``SkipNonFinite`` stopped training."""

    def __init__(self, transform):
        super().__init__()
        self.transform = transform

    def on_train_batch_end(self, batch, logs=None):
        self.transform.raise_if_exhausted()


@register
class SkipNonFinite(GradientTransform):
    """Skip any update whose gradients hold NaN or Inf; stop after too many in a row.

    ``gate(grads)`` is ``all_i all(isfinite(g_i))`` and not yet stopped; where
    it is ``False`` the caller (``TransformedOptimizer``, the Trainer) skips
    the whole step: weights, optimizer slots, later transforms' state and the
    step counter are left unchanged. ``skipped_steps`` counts every skip,
    ``consecutive_skips`` the current run of non-finite steps. When
    ``consecutive_skips`` reaches ``max_consecutive`` training is *stopped*:
    from then on every step is skipped, finite or not, until :meth:`reset`, and
    an error naming the cause is raised (see below). Called as a map,
    ``t(grads)`` returns the gradients unchanged if finite and zeros otherwise,
    so nothing downstream ever sees a NaN. Place it first in a chain.

    Where the error is raised:

    * eagerly: ``NonFiniteGradientError`` from the step that reaches the limit;
    * in a ``tf.function`` without XLA (``model.fit`` with
      ``jit_compile=False``, the Trainer without XLA): the same step fails
      with ``tf.errors.InvalidArgumentError`` carrying the message below (an
      in-graph ``tf.debugging.Assert``), so ``fit`` stops at that batch;
    * under XLA (``jit_compile=True``): XLA compiles assertions to nothing and
      has no way to raise from compiled code, so the step cannot fail. Training
      is stopped in the graph instead (every later step is skipped, the
      weights stay as they were before the first skipped step of the run) and
      ``NonFiniteGradientError`` is raised by :meth:`raise_if_exhausted` when
      host code calls it: ``TransformedOptimizer`` does at the end of ``fit``;
      pass ``callbacks=[skip.callback()]`` to ``fit`` (Keras or the Trainer)
      to raise it at the end of the batch (the ``steps_per_execution`` call)
      in which the limit was reached (without it, the Trainer raises at the
      end of that epoch). A warning says so when the gate is traced under XLA.

    Args:
        max_consecutive: how many consecutive skipped steps stop training (an
            integer >= 1), or ``None`` to skip forever.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, SkipNonFinite
        >>> skip = SkipNonFinite(max_consecutive=5)
        >>> opt = TransformedOptimizer(keras.optimizers.Adam(1e-3), [skip])
        >>> # model.compile(opt, loss, jit_compile=True); model.fit(..., callbacks=[skip.callback()])

    Paper: the dynamic loss scaling of Micikevicius et al., "Mixed Precision
    Training", ICLR 2018, which skips steps with non-finite gradients.
    """

    def __init__(self, max_consecutive=10, name=None):
        super().__init__(name=name)
        if max_consecutive is not None:
            max_consecutive = int(check_number("max_consecutive", max_consecutive, minimum=1, integer=True))
        self.max_consecutive = max_consecutive

    def build(self, variables):
        super().build(variables)
        self.skipped_steps = self.add_variable("skipped_steps", dtype="int32", statistic=True)
        self.consecutive_skips = self.add_variable("consecutive_skips", dtype="int32", statistic=True)

    def error_message(self, count=None):
        return (
            f"SkipNonFinite: the gradients held NaN or Inf in {count or self.max_consecutive} consecutive "
            f"steps (max_consecutive={self.max_consecutive}); each was skipped, so the weights are "
            "still finite, and training is stopped. Check the data and loss for NaN/Inf, lower the "
            "learning rate, add gradient clipping, or use loss scaling under float16. Call "
            "reset() on the transform to train on."
        )

    def gate(self, grads, variables=None):
        if not self.built:
            self.build(variables or [])
        finite = _all_finite(grads)
        previous = self.consecutive_skips
        if self.max_consecutive is None:
            apply = finite
            consecutive = ops.where(finite, 0, previous + 1)
        else:
            stopped = ops.greater_equal(previous, self.max_consecutive)
            apply = ops.logical_and(finite, ops.logical_not(stopped))
            consecutive = ops.where(stopped, previous, ops.where(finite, 0, previous + 1))
        self.skipped_steps.assign(self.skipped_steps + (1 - ops.cast(apply, "int32")))
        self.consecutive_skips.assign(consecutive)
        if self.max_consecutive is not None and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if tf.executing_eagerly():
                if int(consecutive) >= self.max_consecutive:
                    raise NonFiniteGradientError(self.error_message())
            elif _in_xla_context():
                logger.warning(
                    "SkipNonFinite(max_consecutive=%d) under XLA: compiled code cannot raise, so after %d "
                    "consecutive non-finite steps training is stopped in the graph (every later step is "
                    "skipped) and NonFiniteGradientError is raised only when raise_if_exhausted() runs: at "
                    "the end of fit, or after every batch with fit(callbacks=[skip.callback()]).",
                    self.max_consecutive,
                    self.max_consecutive,
                )
            else:
                tf.debugging.Assert(ops.less(consecutive, self.max_consecutive), [self.error_message()])
        return apply

    def call(self, grads, variables):
        finite = _all_finite(grads)
        return [None if g is None else ops.where(finite, g, ops.zeros_like(g)) for g in grads]

    def is_stopped(self) -> bool:
        """Whether ``max_consecutive`` steps in a row were skipped (training is stopped)."""
        if not self.built or self.max_consecutive is None:
            return False
        return int(ops.convert_to_numpy(self.consecutive_skips)) >= self.max_consecutive

    def raise_if_exhausted(self):
        """Raise ``NonFiniteGradientError`` if ``max_consecutive`` steps in a row were skipped.

        Reads one scalar from the device. Training stays stopped (every step
        skipped) until :meth:`reset`.
        """
        if self.is_stopped():
            raise NonFiniteGradientError(self.error_message())

    def reset(self):
        """Clear the run of consecutive skips, so that training can go on after a stop."""
        if self.built:
            self.consecutive_skips.assign(0)

    def callback(self):
        """A Keras callback that calls :meth:`raise_if_exhausted` after every batch.

        Needed under XLA (``jit_compile=True``) to stop ``model.fit`` or
        ``Trainer.fit`` at the end of the batch (``steps_per_execution`` call)
        that reached ``max_consecutive``; without XLA the step itself fails.
        Costs one scalar read from the device per batch.

        Example:
            >>> skip = SkipNonFinite(max_consecutive=3)
            >>> callbacks = [skip.callback()]  # model.fit(..., callbacks=callbacks)
        """
        return _RaiseWhenStopped(self)

    def get_config(self):
        return {**super().get_config(), "max_consecutive": self.max_consecutive}


@register
class GradientNoise(GradientTransform):
    """Add annealed Gaussian noise to the gradients.

    ``g_t <- g_t + N(0, sigma_t^2)`` with ``sigma_t^2 = eta / (1 + t)^gamma``,
    ``t = 0, 1, ...`` counting this transform's applied steps. Fresh,
    independent noise every step, one seed per gradient tensor drawn from a
    ``keras.random.SeedGenerator`` whose state is a variable, so a seeded run
    is reproducible and resumes exactly after save/load (the streams with and
    without XLA differ, as TensorFlow's own do).

    Sampler: the Box-Muller transform in ``keras.ops`` on
    ``keras.random.uniform`` (exact; about 15 ns per sample on one CPU
    thread, against 22 ns for ``keras.random.normal``, whose TensorFlow CPU
    kernel applies the same transform one scalar at a time). Under XLA
    (``jit_compile=True``, TensorFlow) XLA's own Box-Muller normal with
    ``alg="threefry"`` (about 24 ns), since ``keras.random``'s default
    algorithm costs about 900 ns per sample on XLA:CPU. Either way, on CPU the
    noise of a 670k-weight model costs about half of an Adam step.
    Statistic: ``noise_std`` (``sigma_t`` of the last step).

    Args:
        eta: the initial variance, >= 0 (the paper tries 0.01, 0.3 and 1.0).
        gamma: the annealing exponent, >= 0 (0.55 in the paper).
        seed: an integer seed, or ``None`` for a random one.
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, GradientNoise
        >>> opt = TransformedOptimizer(keras.optimizers.Adam(1e-3), [GradientNoise(0.01, seed=1)])

    Paper: Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens,
    "Adding Gradient Noise Improves Learning for Very Deep Networks", 2015
    (arXiv:1511.06807).
    """

    def __init__(self, eta=0.01, gamma=0.55, seed=None, name=None):
        super().__init__(name=name)
        self.eta = float(check_non_negative("eta", eta))
        self.gamma = float(check_non_negative("gamma", gamma))
        if seed is not None:
            seed = int(check_non_negative("seed", seed, integer=True))
        self.seed = seed

    def build(self, variables):
        super().build(variables)
        self.step = self.add_variable("step", dtype="int32")
        self.noise_std = self.add_variable("noise_std", statistic=True)
        with keras.name_scope(self.name, caller=self):
            self.seed_generator = keras.random.SeedGenerator(self.seed, name="seed_generator")
        self._variables.append(self.seed_generator.state)

    def call(self, grads, variables):
        t = ops.cast(self.step, "float32")
        variance = self.eta / ops.power(1.0 + t, self.gamma)
        draw = _normal_noise_xla if _in_xla_context() else _normal_noise
        out = []
        for g in grads:
            if g is None:
                out.append(None)
                continue
            noise = draw(tuple(g.shape), variance, self.seed_generator)
            out.append(g + ops.cast(noise, g.dtype))
        self.step.assign(self.step + 1)
        self.noise_std.assign(ops.sqrt(variance))
        return out

    def get_config(self):
        return {**super().get_config(), "eta": self.eta, "gamma": self.gamma, "seed": self.seed}


@register
class GradientCentralization(GradientTransform):
    """Center each kernel gradient on its output units' fan-in (zero mean).

    For a kernel of rank > 1 shaped ``(..., units)`` (Dense ``(in, out)``,
    Conv ``(kh, kw, in, out)``): ``G <- G - mean(G, axes=all but the last)``,
    i.e. every output unit's gradient column has zero mean. Biases and other
    rank <= 1 variables, and variables matching ``exclude``, are unchanged.

    Args:
        exclude: regular expressions searched in variable paths; matches are
            left unchanged (e.g. ``"embedding"``).
        name: the transform's name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import TransformedOptimizer, GradientCentralization
        >>> opt = TransformedOptimizer(keras.optimizers.SGD(0.1, momentum=0.9), [GradientCentralization()])

    Paper: Yong, Huang, Hua & Zhang, "Gradient Centralization: A New
    Optimization Technique for Deep Neural Networks", ECCV 2020.
    """

    def __init__(self, exclude=(), name=None):
        super().__init__(name=name)
        self.exclude = _check_patterns("exclude", exclude)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in self.exclude)) if self.exclude else None

    def call(self, grads, variables):
        out = []
        for i, g in enumerate(grads):
            excluded = (
                self._pattern is not None
                and variables is not None
                and self._pattern.search(variable_path(variables[i])) is not None
            )
            if g is None or len(g.shape) <= 1 or excluded:
                out.append(g)
                continue
            axes = tuple(range(len(g.shape) - 1))
            out.append(g - ops.mean(g, axis=axes, keepdims=True))
        return out

    def get_config(self):
        return {**super().get_config(), "exclude": list(self.exclude)}

