"""Weight regularizers: spectral norm, soft orthogonality and SRIP.

Each is a ``keras.regularizers.Regularizer`` (use it as ``kernel_regularizer=``).
A kernel of any rank is read as the matrix ``W`` of shape
``(prod(shape[:-1]), shape[-1])``: one column per output unit / filter, as Keras
lays out Dense ``(fan_in, units)`` and convolution ``(*k, in, out)`` kernels.
"""

from __future__ import annotations

import zlib

import keras
import numpy as np
from keras import ops

from keras_trainkit._compat.keras import in_stateless_scope
from keras_trainkit._compat.tensorflow import gradient_tape_recording
from keras_trainkit.regularizers._registry import register
from keras_trainkit.utils.dtypes import float32_if_half
from keras_trainkit.utils.validation import (
    FLOAT32_MAX,
    check_in,
    check_non_negative,
    check_type,
    check_unrolled_count,
)

_EPSILON = 1e-12



def _as_matrix(x):
    shape = tuple(x.shape)
    if len(shape) == 0:
        return ops.reshape(x, (1, 1))
    if len(shape) == 1:
        return ops.reshape(x, (1, shape[0]))
    return ops.reshape(x, (-1, shape[-1]))


def _normalize(v):
    return v / (ops.sqrt(ops.sum(ops.square(v))) + _EPSILON)


def _normalize_or(v, fallback):
    """``v / ||v||``, or ``fallback`` where ``v`` is (numerically) zero: a zero kernel
    (``kernel_initializer="zeros"``) gives a zero iterate, from which the power
    iteration could never leave once the kernel changes."""
    norm = ops.sqrt(ops.sum(ops.square(v)))
    return ops.where(norm > _EPSILON, v / ops.maximum(norm, _EPSILON), fallback)


def _start_vector(key: str, size: int) -> np.ndarray:
    """A fixed unit vector, reproducible from ``key`` (no global random state)."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    v = rng.normal(size=size)
    return v / np.linalg.norm(v)


def _gram_minus_identity(matrix, mode):
    rows, cols = matrix.shape
    if mode == "auto":
        mode = "columns" if cols <= rows else "rows"
    if mode == "columns":
        gram = ops.matmul(ops.transpose(matrix), matrix)
        size = cols
    else:
        gram = ops.matmul(matrix, ops.transpose(matrix))
        size = rows
    return gram - ops.eye(size, dtype=matrix.dtype)


def _check_factor(factor):
    check_non_negative("factor", factor)
    return float(factor)


@register(aliases=("spectral_norm", "spectral_norm_regularizer"))
class SpectralNorm(keras.regularizers.Regularizer):
    """Penalty on the largest singular value of a kernel, by power iteration.

    Spectral norm regularization (Yoshida & Miyato 2017):

        penalty = factor * sigma(W)^2        (squared=True, the paper's form)
        penalty = factor * sigma(W)          (squared=False)

    ``sigma(W)`` is estimated by power iteration with a vector ``u`` kept between
    calls (one per weight, keyed by the variable's path), so one iteration per
    training step suffices once training is under way:

        v <- W u / ||W u||,   u <- W^T v / ||W^T v||,   sigma = v^T W u.

    Where ``W^T v`` is zero (a zero kernel), ``u`` restarts from its fixed start
    vector instead of becoming zero, so the estimate recovers once ``W`` changes.

    ``u`` and ``v`` are held constant in the gradient, which is then
    ``d sigma / d W = v u^T`` (exact at convergence).

    ``u`` advances only in a training step (where gradients are recorded: under
    a ``tf.GradientTape``, or with PyTorch's autograd on), as
    ``keras.layers.SpectralNormalization`` advances its vector only with
    ``training=True``: an evaluation (``model.evaluate``, a validation pass)
    reads the same penalty but leaves ``u`` as it was, so training is the same
    with or without validation.

    **State.** ``u`` lives in a non-trainable ``keras.Variable`` created on the
    first call (outside any ``tf.function``) and updated in place every call. It
    is not a layer weight: it is saved in this regularizer's config (``state``,
    ``{key: [floats]}``), which ``model.save("m.keras")`` writes as part of the
    layer's config, so a loaded model resumes from the saved vectors. Under
    ``tf.distribute`` the first replica's update is kept. Where no state can
    be kept (Keras's JAX ``fit``, whose jitted step is stateless and hands the
    regularizer its weight without a path), ``u`` and ``v`` are the top
    singular vectors from an SVD of ``W``: the iteration's limit, at an SVD's
    cost per step.

    Args:
        factor: penalty weight (>= 0).
        power_iterations: power-iteration steps per call (an integer in 1..1000).
        squared: penalize ``sigma^2`` (default) or ``sigma``.
        state: saved power-iteration vectors (from ``get_config``); leave ``None``.

    Example:
        >>> import keras
        >>> layer = keras.layers.Dense(32, kernel_regularizer=SpectralNorm(factor=1e-3))

    Reference:
        Y. Yoshida, T. Miyato, "Spectral Norm Regularization for Improving the
        Generalizability of Deep Learning", arXiv:1705.10941, 2017.
    """

    def __init__(self, factor: float = 0.01, power_iterations: int = 1, squared: bool = True,
                 state: dict | None = None):
        self.factor = _check_factor(factor)
        check_unrolled_count("power_iterations", power_iterations)
        check_type("squared", squared, bool)
        self.power_iterations = int(power_iterations)
        self.squared = squared
        self._initial_state: dict[str, list[float]] = {}
        if state is not None:
            check_type("state", state, dict)
            for key, vector in state.items():
                check_type("state key", key, str)
                values = np.asarray(vector, dtype="float64")
                if (values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values))
                        or np.abs(values).max() > FLOAT32_MAX):
                    raise ValueError(
                        "Argument `state` must map names to non-empty finite float32 vectors. "
                        f"Received: state[{key!r}]={vector!r}"
                    )
                self._initial_state[key] = [float(v) for v in values]
        self._vectors: dict[str, keras.Variable] = {}

    def state_variables(self, variable, create: bool = True) -> list:
        """The state kept for the weight ``variable``: its ``u``. With ``create``, one not
        made yet is made as the first call would make it (from ``state`` or the start
        vector, no iteration), so a checkpoint can hold it before the first step;
        without, ``[]`` until a call made it (:func:`state_variables`)."""
        if not create:
            return [self._vectors[variable.path]] if variable.path in self._vectors else []
        shape = tuple(variable.shape)
        return [self._vector(variable.path, int(shape[-1]) if shape else 1)]

    def _vector(self, key: str, size: int) -> keras.Variable:
        if key in self._vectors:
            return self._vectors[key]
        initial = self._saved_vector(key, size)
        if initial is None:
            initial = _start_vector(key, size)
        value = np.asarray(initial, dtype="float32")
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.init_scope():  # create eagerly even when first called in a tf.function
                variable = keras.Variable(value, trainable=False, name="spectral_norm_u",
                                          aggregation="only_first_replica")
        else:
            variable = keras.Variable(value, trainable=False, name="spectral_norm_u",
                                      aggregation="only_first_replica")
        self._vectors[key] = variable
        return variable

    def _saved_vector(self, key: str, size: int):
        """The saved vector for ``key``, or ``None``.

        A variable's path can differ between the saving and the loading model only by
        a model-name prefix (a Sequential model builds its layers as
        ``"sequential/dense/kernel"``, ``load_model`` rebuilds them as
        ``"dense/kernel"``): without an exact match, the one saved key that equals
        ``key`` up to such a prefix (and has the right length) is used.
        """
        initial = self._initial_state.get(key)
        if initial is None:
            matches = [name for name, saved in self._initial_state.items() if len(saved) == size
                       and (name.endswith("/" + key) or key.endswith("/" + name))]
            if len(matches) == 1:  # saved under the other path: it now lives under ``key``
                initial = self._initial_state.pop(matches[0])
        return initial if initial is not None and len(initial) == size else None

    def sigma(self, x, update: bool = True):
        """The power-iteration estimate of the largest singular value of ``x``."""
        matrix = _as_matrix(ops.convert_to_tensor(x))
        key = getattr(x, "path", None) or "x".join(str(d) for d in matrix.shape)
        size = int(matrix.shape[1])
        w = ops.stop_gradient(ops.cast(matrix, "float32"))
        if key not in self._vectors and in_stateless_scope():
            # No state can be kept (a symbolic build, or JAX's stateless jitted step, where
            # the weight comes without its path): the iteration's limit, by SVD.
            left, _, right = ops.svd(w, full_matrices=False)
            u, v = right[0], left[:, 0]
        else:
            u_var = self._vector(key, size)
            u = ops.convert_to_tensor(u_var)
            start = ops.convert_to_tensor(_start_vector(key, size), dtype="float32")
            for _ in range(self.power_iterations):
                v = _normalize(ops.matmul(w, u))
                u = _normalize_or(ops.matmul(ops.transpose(w), v), start)
            if update:
                u_var.assign(u)
        u = ops.cast(ops.stop_gradient(u), matrix.dtype)
        v = ops.cast(ops.stop_gradient(v), matrix.dtype)
        return ops.sum(v * ops.matmul(matrix, u))

    def __call__(self, x):
        sigma = self.sigma(x, update=_in_training_step())
        value = ops.square(sigma) if self.squared else sigma
        return ops.convert_to_tensor(self.factor, dtype=value.dtype) * value

    def get_config(self):
        state = dict(self._initial_state)
        for key, variable in self._vectors.items():
            state[key] = [float(v) for v in keras.ops.convert_to_numpy(variable)]
        return {"factor": self.factor, "power_iterations": self.power_iterations,
                "squared": self.squared, "state": state or None}


def _in_training_step() -> bool:
    """Whether the penalty is computed for a training step: gradients are being recorded
    (TensorFlow: a ``GradientTape``, through ``_compat.tensorflow``; PyTorch: autograd on).
    JAX's jitted steps keep no ``u`` (SVD) and an eager call there counts as training."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return gradient_tape_recording()
    if backend == "torch":
        import torch

        return torch.is_grad_enabled()
    return True


def state_variables(model) -> list:
    """The variables the weight regularizers of ``model`` keep between steps, in the order
    of ``model.weights``: ``SpectralNorm``'s power-iteration vectors ``u``.

    They are not model variables, yet every step reads and updates them; the
    Trainer's and the tuning trials' checkpoints, ``control.training_state_variables``
    and ``diagnostics.lr_find`` hold them beside the model's and the optimizer's. A
    missing one is made (as the first call would make it) on TensorFlow and PyTorch;
    on JAX, whose ``fit`` keeps no such state (``SpectralNorm`` takes an SVD there),
    only those an eager call made are listed.
    """
    found = []
    for variable in model.weights:
        regularizer = getattr(variable, "regularizer", None)
        if hasattr(regularizer, "state_variables"):
            found.extend(regularizer.state_variables(variable, create=keras.backend.backend() != "jax"))
    return found


@register(aliases=("soft_orthogonality", "so"))
class SoftOrthogonality(keras.regularizers.Regularizer):
    """Soft orthogonality: the squared Frobenius distance of the Gram matrix to ``I``.

    Bansal et al. (2018), "SO":

        penalty = factor * || W^T W - I ||_F^2      (mode="columns")
        penalty = factor * || W W^T - I ||_F^2      (mode="rows")

    ``mode="auto"`` (default) takes the smaller Gram matrix, the only one that
    can reach ``I`` (``columns`` when ``units <= fan_in``). The gradient is
    ``4 W (W^T W - I)`` (columns). Unlike ``keras.regularizers.OrthogonalRegularizer``,
    which penalizes the mean absolute cosine between normalized rows or columns
    (orthogonal *directions*, any norms), this penalty also pulls every column to
    unit norm, i.e. towards an orthonormal, isometric ``W``.

    Args:
        factor: penalty weight (>= 0).
        mode: ``"auto"``, ``"columns"`` or ``"rows"``.

    Example:
        >>> import keras
        >>> layer = keras.layers.Dense(32, kernel_regularizer=SoftOrthogonality(factor=1e-4))

    Reference:
        N. Bansal, X. Chen, Z. Wang, "Can We Gain More from Orthogonality
        Regularizations in Training Deep CNNs?", NeurIPS 2018.
    """

    def __init__(self, factor: float = 1e-4, mode: str = "auto"):
        self.factor = _check_factor(factor)
        check_in("mode", mode, ("auto", "columns", "rows"))
        self.mode = mode

    def __call__(self, x):
        residual = _gram_minus_identity(_as_matrix(ops.convert_to_tensor(x)), self.mode)
        return ops.convert_to_tensor(self.factor, dtype=residual.dtype) * ops.sum(ops.square(residual))

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


@register(aliases=("srip",))
class SRIP(keras.regularizers.Regularizer):
    """Spectral restricted isometry property (SRIP) regularizer.

    Bansal et al. (2018): the spectral norm of the Gram residual,

        penalty = factor * sigma(W^T W - I)     (mode="columns"; "rows" uses W W^T)

    ``sigma`` is estimated by ``power_iterations`` steps of power iteration on
    the symmetric residual ``A``, from a fixed start vector ``x``:
    ``x <- A x / ||A x||``, then ``sigma = ||A x||``. The iterate is held
    constant in the gradient, which is ``sign(lambda) 2 W x x^T`` at convergence
    (``lambda`` the eigenvalue of largest magnitude). The paper uses two
    iterations from a random start each step; the fixed start makes the penalty
    deterministic, a lower bound of ``sigma`` that tightens with more iterations.

    Args:
        factor: penalty weight (>= 0).
        power_iterations: power-iteration steps per call (an integer in 1..1000).
        mode: ``"auto"``, ``"columns"`` or ``"rows"`` (see ``SoftOrthogonality``).

    Example:
        >>> import keras
        >>> layer = keras.layers.Dense(32, kernel_regularizer=SRIP(factor=1e-3))

    Reference:
        N. Bansal, X. Chen, Z. Wang, "Can We Gain More from Orthogonality
        Regularizations in Training Deep CNNs?", NeurIPS 2018.
    """

    def __init__(self, factor: float = 1e-3, power_iterations: int = 5, mode: str = "auto"):
        self.factor = _check_factor(factor)
        check_unrolled_count("power_iterations", power_iterations)
        check_in("mode", mode, ("auto", "columns", "rows"))
        self.power_iterations = int(power_iterations)
        self.mode = mode

    def sigma(self, x):
        """The power-iteration estimate of ``sigma(W^T W - I)``, in ``x``'s dtype (computed
        in float32 for a float16/bfloat16 ``x``: near an orthogonal ``W`` the squares of
        the residual underflow float16, and the iterate became 0/0)."""
        x = ops.convert_to_tensor(x)
        dtype = keras.backend.standardize_dtype(x.dtype)
        matrix = ops.cast(_as_matrix(x), float32_if_half(dtype))
        residual = _gram_minus_identity(matrix, self.mode)
        size = int(residual.shape[0])
        vector = ops.convert_to_tensor(_start_vector(f"srip{size}", size), dtype=residual.dtype)
        frozen = ops.stop_gradient(residual)
        for _ in range(self.power_iterations):
            vector = _normalize(ops.matmul(frozen, vector))
        vector = ops.stop_gradient(vector)
        sigma = ops.sqrt(ops.sum(ops.square(ops.matmul(residual, vector))) + _EPSILON * _EPSILON)
        return ops.cast(sigma, dtype)

    def __call__(self, x):
        sigma = self.sigma(x)
        return ops.convert_to_tensor(self.factor, dtype=sigma.dtype) * sigma

    def get_config(self):
        return {"factor": self.factor, "power_iterations": self.power_iterations, "mode": self.mode}


__all__ = ["SRIP", "SoftOrthogonality", "SpectralNorm"]
