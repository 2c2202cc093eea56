"""Shampoo: block-diagonal Kronecker-factored preconditioning with grafting.

The math lives in small functions of tensors (``block_view``, ``unblock``,
``inverse_pth_root_eigh``, ``inverse_pth_root_newton``); :class:`Shampoo` is a thin
Keras ``Optimizer`` shell around them, written with ``keras.ops`` only.
"""

from __future__ import annotations

import math

from keras import ops

from keras_trainkit._compat.keras import add_slot_variables
from keras_trainkit.optimizers import _batched_linalg as batched_linalg
from keras_trainkit.optimizers._base import TrainkitOptimizer, hyperparameter, state_dtype
from keras_trainkit.optimizers._registry import register
from keras_trainkit.utils import validation as v

_ROOT_METHODS = ("eigh", "newton")
_GRAFTS = ("adam", "sgd")
_TINY = 1e-30


def matrix_shape(shape) -> tuple[int, int]:
    """The 2-D shape Shampoo gives a variable: ``(prod(shape[:-1]), shape[-1])``."""
    shape = tuple(int(d) for d in shape)
    return int(math.prod(shape[:-1])), shape[-1]


def balanced_block_size(dim: int, max_block_size: int) -> tuple[int, int]:
    """``(blocks, size)``: the fewest blocks of at most ``max_block_size`` covering ``dim``,
    made as even as possible.

    ``blocks = ceil(dim / max_block_size)`` (as many blocks as a plain cut into
    ``max_block_size`` pieces) and ``size = ceil(dim / blocks)``; the last block
    holds ``dim - (blocks - 1) * size`` entries and is zero-padded by fewer than
    ``blocks`` entries. For example 784 with ``max_block_size=128`` gives 7 blocks
    of 112 (no padding) instead of 6 of 128 and one of 16 padded to 128.
    """
    blocks = -(-dim // max_block_size)
    return blocks, -(-dim // blocks)


def block_layout(shape, max_block_size: int) -> tuple[int, int, int, int]:
    """``(row_blocks, col_blocks, block_rows, block_cols)`` for a variable shape.

    Rows and columns of the 2-D view are each cut by :func:`balanced_block_size`;
    the last block of a dimension is zero-padded (by fewer rows or columns than
    there are blocks). Zero padding does not change the result: a padded block's
    statistics are block-diagonal between its real and padded parts, so the
    inverse roots act on the real part exactly as on an unpadded block.
    """
    m, n = matrix_shape(shape)
    nr, br = balanced_block_size(m, max_block_size)
    nc, bc = balanced_block_size(n, max_block_size)
    return nr, nc, br, bc


def block_view(x, layout):
    """Reshape a variable-shaped tensor to blocks ``(row_blocks, col_blocks, br, bc)``."""
    nr, nc, br, bc = layout
    m, n = matrix_shape(x.shape)
    x = ops.reshape(x, (m, n))
    pad_m, pad_n = nr * br - m, nc * bc - n
    if pad_m or pad_n:
        x = ops.pad(x, ((0, pad_m), (0, pad_n)))
    x = ops.reshape(x, (nr, br, nc, bc))
    return ops.transpose(x, (0, 2, 1, 3))


def unblock(blocks, shape):
    """Inverse of :func:`block_view`: blocks back to a tensor of ``shape``."""
    nr, nc, br, bc = blocks.shape
    m, n = matrix_shape(shape)
    x = ops.reshape(ops.transpose(blocks, (0, 2, 1, 3)), (nr * br, nc * bc))
    if nr * br != m or nc * bc != n:
        x = x[:m, :n]
    return ops.reshape(x, shape)


def inverse_pth_root_eigh(stat, p: int, epsilon: float):
    """``(A + epsilon * lambda_max(A) I)^(-1/p)`` for a batch of symmetric PSD matrices.

    Eigendecomposition ``A = Q diag(lambda) Q^T``; negative round-off eigenvalues
    are clipped to 0 and the ridge ``epsilon`` is relative to the largest
    eigenvalue, so the result is invariant to the scale of the gradients.
    """
    eigenvalues, q = batched_linalg.eigh(stat)
    eigenvalues = ops.maximum(eigenvalues, 0.0)
    lam_max = ops.maximum(ops.max(eigenvalues, axis=-1, keepdims=True), _TINY)
    scale = ops.power(eigenvalues + epsilon * lam_max, -1.0 / p)
    return ops.matmul(q * ops.expand_dims(scale, -2), ops.swapaxes(q, -1, -2))


def _max_eigenvalue(stat, iterations: int = 16):
    """Power-iteration estimate of the largest eigenvalue of symmetric PSD matrices."""
    n = stat.shape[-1]
    vec = ops.ones(stat.shape[:-1] + (1,), dtype=stat.dtype) / math.sqrt(n)

    def body(_, vec):
        vec = ops.matmul(stat, vec)
        return vec / ops.maximum(ops.norm(vec, axis=-2, keepdims=True), _TINY)

    vec = ops.fori_loop(0, iterations, body, vec)
    return ops.sum(vec * ops.matmul(stat, vec), axis=(-2, -1))


def inverse_pth_root_newton(stat, p: int, epsilon: float, iterations: int):
    """``(A + epsilon * lambda_max(A) I)^(-1/p)`` by the coupled Newton iteration.

    Guo & Higham's iteration as used by Anil et al. (2020), matrix products only
    (fast under XLA where an eigendecomposition is slow): with ``A_r`` the
    regularized matrix, ``z = (1 + p) / (2 lambda_max(A_r))``, ``M_0 = z A_r``,
    ``H_0 = z^(1/p) I``, repeat ``T = ((p + 1) I - M) / p``, ``H <- H T``,
    ``M <- T^p M``; ``M -> I`` and ``H -> A_r^(-1/p)``. ``lambda_max`` is estimated
    by power iteration. A fixed number of ``iterations`` keeps it XLA-friendly;
    about ``log(1/epsilon) / log(1 + 1/p)^p + 5`` are needed.
    """
    n = stat.shape[-1]
    identity = ops.eye(n, dtype=stat.dtype)
    lam_max = ops.maximum(_max_eigenvalue(stat), _TINY)
    lam_max = ops.reshape(lam_max, lam_max.shape + (1, 1))
    ridge = epsilon * lam_max
    regularized = stat + ridge * identity
    z = (1.0 + p) / (2.0 * (lam_max + ridge))
    m = z * regularized
    h = ops.power(z, 1.0 / p) * identity

    def body(_, state):
        h, m = state
        t = ((p + 1.0) * identity - m) / p
        t_p = t
        for _ in range(p - 1):
            t_p = ops.matmul(t_p, t)
        return ops.matmul(h, t), ops.matmul(t_p, m)

    h, _ = ops.fori_loop(0, iterations, body, (h, m))
    return h


@register
class Shampoo(TrainkitOptimizer):
    """Shampoo with block preconditioners, periodic refresh and layer-wise grafting.

    Each variable of rank >= 2 is viewed as a matrix ``(prod(shape[:-1]),
    shape[-1])`` (a Dense or conv kernel's fan-in by units) and each dimension is cut
    into the fewest blocks of at most ``max_block_size`` entries, made even
    (``ceil(dim / ceil(dim / max_block_size))`` each, the last one shorter; e.g.
    784 -> 7 blocks of 112; see ``balanced_block_size``). For every block ``G_b`` of the
    gradient at step ``t`` (1-based):

        L_b <- beta_2 * L_b + (1 - beta_2) * G_b G_b^T      (beta_2 = 1: L_b += G_b G_b^T)
        R_b <- beta_2 * R_b + (1 - beta_2) * G_b^T G_b
        every `preconditioning_compute_steps` steps (when (t - 1) % k == 0):
            P_L = (L_b + epsilon * lambda_max(L_b) I)^(-1/4),  P_R likewise
        S_b = P_L G_b P_R                                    (Shampoo direction)

    The grafted optimizer gives a direction ``D_g`` per variable: ``"sgd"``:
    ``D_g = G``; ``"adam"``: ``v <- graft_beta_2 v + (1 - graft_beta_2) G^2``,
    ``D_g = G / (sqrt(v / (1 - graft_beta_2^t)) + graft_epsilon)`` (epsilon
    outside the square root, Adam's normalization without its momentum). Grafting
    is layer-wise: direction from Shampoo, norm from the grafted optimizer,

        D = S * ||D_g||_F / ||S||_F     if t - 1 >= start_preconditioning_step
        D = D_g                         otherwise, and always for 1-D variables

    then momentum (shared by both branches, bias-corrected) and the step:

        m <- beta_1 m + (1 - beta_1) D
        w <- w - learning_rate * m / (1 - beta_1^t)

    With ``graft="adam"`` and no preconditioning this is Adam with the momentum
    taken after normalization. Decoupled weight decay, clipping, EMA and
    accumulation come from the Keras base class. The ridge ``epsilon`` is
    relative to the block's largest eigenvalue (Anil et al. 2020), so the
    direction is invariant to the scale of the gradients.

    Statistics, preconditioners, graft and momentum slots are optimizer
    variables: they are saved with the model and checkpointed. For ``float16``
    and ``bfloat16`` variables they are ``float32`` and the update is computed
    in ``float32``, then cast to the variable's dtype: half precision cannot
    hold the statistics (``G G^T`` overflows above 65504) and has no
    eigendecomposition kernel. Memory per
    matrix variable of ``m x n`` entries: ``L, R, P_L, P_R`` hold about
    ``2 m n + 2 m n`` entries when ``m, n`` are multiples of the block size.

    Cost: per step, a kernel of ``m x n`` entries adds four products per block
    (two for the statistics, two for the preconditioning), ``8 m n b`` flops
    with block size ``b``, against about ``6 B m n`` for its forward and
    backward pass at batch size ``B``: ``4 b / (3 B)`` of that pass. Every
    ``preconditioning_compute_steps`` steps each block adds two ``b x b``
    eigendecompositions. The blocks of a variable go through single batched
    ``einsum`` / ``matmul`` / ``eigh`` calls (the transposes folded into the
    products; on JAX's CPU backend ``eigh`` takes one block per LAPACK call, see
    ``_batched_linalg``), and the inverse roots are computed only on refresh
    steps (a ``cond``). On CPU (``benchmarks/optimizer_step.py --cpu-time``: MLP
    784-512-512-10, batch 128, one thread) the defaults cost about 3.7x an
    Adam step: products about 1.8x, the amortized eigendecompositions about
    0.9x. The issue's 3x target is not reachable at block 128 with exact
    inverse roots on that machine: the products alone are ``656`` Mflop per
    step (1.5x an Adam step at the measured 26 Gflop/s of a batched
    ``128 x 128`` matmul) and the 92 eigendecompositions per refresh about
    1.0x, a floor of about 3.5x (``docs/benchmarks.md``). 128 is the block size
    the authors' reference implementation recommends (Anil et al. 2020; larger
    blocks when compute allows); with batches smaller than the block size, 64
    or 32 cuts the per-step products at the price of a coarser preconditioner.

    ``inverse_root="eigh"`` (default) uses an eigendecomposition: exact up to
    round-off and, in a TensorFlow graph on CPU, 3.5-15x faster than the coupled
    Newton iteration (one thread, a batch of ``128 x 128`` statistics: eigh
    about 2 ms per matrix; Newton 7 ms at 10 iterations, still 0.5 relative
    error, 15 ms at 20), but slow under TensorFlow's XLA on CPU (XLA's own
    eigensolver; JAX calls LAPACK and stays fast: in ``model.fit`` on JAX's CPU
    backend, one thread, 4.1x an Adam step against 15.6x with Newton).
    ``inverse_root="newton"`` uses the coupled Newton iteration of Anil et al.
    (2020) (matrix products only), the better choice for ``jit_compile=True``
    on TensorFlow on CPU.

    Args:
        learning_rate: float, schedule or callable. Defaults to ``1e-3``.
        beta_1: momentum of the grafted update, in ``[0, 1)``. Defaults to ``0.9``.
        beta_2: decay of the preconditioner statistics, in ``(0, 1]``; ``1.0``
            sums them as in the original Shampoo. Defaults to ``0.999``.
        epsilon: relative ridge added to the statistics before the inverse root,
            ``> 0``. Defaults to ``1e-6``.
        max_block_size: largest side of a preconditioner block, ``>= 1``;
            the per-step cost grows linearly with it (see Cost above).
            Defaults to ``128``.
        preconditioning_compute_steps: refresh the inverse roots every this many
            steps, ``>= 1``. Defaults to ``10``.
        start_preconditioning_step: steps that use the grafted direction alone
            before Shampoo's direction takes over, ``>= 0``. Defaults to ``10``.
        graft: ``"adam"`` or ``"sgd"``: optimizer whose step norm is grafted.
            Defaults to ``"adam"``.
        graft_beta_2: second-moment decay of the Adam graft, in ``[0, 1)``.
            Defaults to ``0.999``.
        graft_epsilon: epsilon of the Adam graft (outside the square root),
            ``>= 0``. Defaults to ``1e-8``.
        inverse_root: ``"eigh"`` or ``"newton"``. Defaults to ``"eigh"``.
        newton_iterations: iterations of the coupled Newton method, ``>= 1``.
            Defaults to ``40``.
        **kwargs: ``weight_decay`` (a float or a schedule, decoupled and
            multiplied by the learning rate), ``exclude_from_weight_decay``
            (name patterns), as for every ``TrainkitOptimizer``; and Keras
            optimizer arguments (``clipnorm``, ``global_clipnorm``, ``use_ema``,
            ``gradient_accumulation_steps``, ...).

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import Shampoo
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model.compile(optimizer=Shampoo(learning_rate=1e-2, max_block_size=64), loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 2)), verbose=0)

    References:
        Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor
        Optimization", ICML 2018. Anil, Gupta, Koren, Regan & Singer, "Scalable
        Second Order Optimization for Deep Learning" (arXiv:2002.09018, 2020):
        blocking, grafting, delayed preconditioning, relative epsilon.
    """

    def __init__(
        self,
        learning_rate=1e-3,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        max_block_size=128,
        preconditioning_compute_steps=10,
        start_preconditioning_step=10,
        graft="adam",
        graft_beta_2=0.999,
        graft_epsilon=1e-8,
        inverse_root="eigh",
        newton_iterations=40,
        name="shampoo",
        **kwargs,
    ):
        v.check_learning_rate("learning_rate", learning_rate)
        v.check_probability("beta_1", beta_1)
        v.check_number("beta_2", beta_2, minimum=0.0, maximum=1.0, min_inclusive=False)
        v.check_positive("epsilon", epsilon)
        v.check_positive("max_block_size", max_block_size, integer=True)
        v.check_positive("preconditioning_compute_steps", preconditioning_compute_steps, integer=True)
        v.check_non_negative("start_preconditioning_step", start_preconditioning_step, integer=True)
        v.check_in("graft", graft, _GRAFTS)
        v.check_probability("graft_beta_2", graft_beta_2)
        v.check_non_negative("graft_epsilon", graft_epsilon)
        v.check_in("inverse_root", inverse_root, _ROOT_METHODS)
        v.check_positive("newton_iterations", newton_iterations, integer=True)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.max_block_size = int(max_block_size)
        self.preconditioning_compute_steps = int(preconditioning_compute_steps)
        self.start_preconditioning_step = int(start_preconditioning_step)
        self.graft = graft
        self.graft_beta_2 = float(graft_beta_2)
        self.graft_epsilon = float(graft_epsilon)
        self.inverse_root = inverse_root
        self.newton_iterations = int(newton_iterations)

    def _is_matrix(self, variable) -> bool:
        return len(variable.shape) >= 2

    def _state_variable(self, variable, name, shape):
        """A statistic or root of ``shape`` for ``variable``, in :func:`state_dtype`."""
        prefix = variable.path.replace("/", "_") if hasattr(variable, "path") else variable.name
        return self.add_variable(shape, dtype=state_dtype(variable.dtype), name=f"{prefix}_{name}")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # In float32 for 16-bit variables: TrainkitOptimizer.add_variable_from_reference.
        self._momentums = add_slot_variables(self, var_list, "momentum")
        if self.graft == "adam":
            self._graft_velocities = add_slot_variables(self, var_list, "graft_velocity")
        self._stats = {}
        self._preconditioners = {}
        for variable in var_list:
            if not self._is_matrix(variable):
                continue
            nr, nc, br, bc = block_layout(variable.shape, self.max_block_size)
            key = self._var_key(variable)
            self._stats[key] = (
                self._state_variable(variable, "stat_left", (nr, nc, br, br)),
                self._state_variable(variable, "stat_right", (nr, nc, bc, bc)),
            )
            self._preconditioners[key] = (
                self._state_variable(variable, "precond_left", (nr, nc, br, br)),
                self._state_variable(variable, "precond_right", (nr, nc, bc, bc)),
            )

    def _inverse_root(self, stat):
        if self.inverse_root == "eigh":
            return inverse_pth_root_eigh(stat, 4, self.epsilon)
        return inverse_pth_root_newton(stat, 4, self.epsilon, self.newton_iterations)

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, dtype)

        if self.graft == "adam":
            velocity = self._graft_velocities[index]
            graft_beta_2 = hyperparameter(self.graft_beta_2, dtype)
            self.assign_add(velocity, (ops.square(gradient) - velocity) * (1.0 - graft_beta_2))
            v_hat = velocity / (1.0 - ops.power(ops.convert_to_tensor(graft_beta_2, dtype=dtype), step))
            direction = gradient / (ops.sqrt(v_hat) + hyperparameter(self.graft_epsilon, dtype))
        else:
            direction = gradient

        if self._is_matrix(variable):
            direction = self._shampoo_direction(gradient, variable, direction)

        momentum = self._momentums[index]
        beta_1 = hyperparameter(self.beta_1, dtype)
        self.assign_add(momentum, (direction - momentum) * (1.0 - beta_1))
        correction = 1.0 - ops.power(ops.convert_to_tensor(beta_1, dtype=dtype), step)
        self.assign_sub(variable, ops.cast(lr * momentum / correction, variable.dtype))

    def _statistics_weight(self, dtype):
        """``sqrt(1 - beta_2)``, the factor of the gradient blocks in the statistics' EMA, or 1
        where ``beta_2`` is 1 (the statistics are sums). A scheduled ``beta_2`` (a variable) is
        read at run time, so a step traced on one side of 1 follows a schedule across it."""
        if isinstance(self.beta_2, float):
            return 1.0 if self.beta_2 == 1.0 else math.sqrt(1.0 - self.beta_2)
        beta_2 = ops.cast(self.beta_2, dtype)
        return ops.where(ops.equal(beta_2, 1.0), ops.ones((), dtype), ops.sqrt(1.0 - beta_2))

    def _shampoo_direction(self, gradient, variable, graft_direction):
        key = self._var_key(variable)
        stat_left, stat_right = self._stats[key]
        precond_left, precond_right = self._preconditioners[key]
        layout = block_layout(variable.shape, self.max_block_size)
        blocks = block_view(gradient, layout)  # in the state dtype, as the statistics
        # G G^T and G^T G as batched products with the transpose folded in (no copy);
        # the EMA weight (1 - beta_2) is applied once to the (smaller) gradient blocks
        # as sqrt(1 - beta_2), not to both b x b products.
        scaled = blocks * self._statistics_weight(blocks.dtype)
        gram_left = ops.einsum("...ij,...kj->...ik", scaled, scaled)
        gram_right = ops.einsum("...ji,...jk->...ik", scaled, scaled)
        if isinstance(self.beta_2, float) and self.beta_2 == 1.0:
            self.assign_add(stat_left, gram_left)
            self.assign_add(stat_right, gram_right)
        else:  # beta_2 * L is L itself where a scheduled beta_2 is 1
            self.assign(stat_left, self.beta_2 * stat_left + gram_left)
            self.assign(stat_right, self.beta_2 * stat_right + gram_right)

        # The branches return values and the assignment follows the cond: a JAX cond
        # (jit, stateless_apply) cannot assign inside a branch.
        stat_left, stat_right = ops.convert_to_tensor(stat_left), ops.convert_to_tensor(stat_right)
        left, right = ops.cond(
            ops.equal(self.iterations % self.preconditioning_compute_steps, 0),
            lambda: (self._inverse_root(stat_left), self._inverse_root(stat_right)),
            lambda: (ops.convert_to_tensor(precond_left), ops.convert_to_tensor(precond_right)),
        )
        self.assign(precond_left, left)
        self.assign(precond_right, right)
        shampoo = unblock(ops.matmul(ops.matmul(left, blocks), right), variable.shape)
        shampoo_norm = ops.sqrt(ops.sum(ops.square(shampoo)))
        graft_norm = ops.sqrt(ops.sum(ops.square(graft_direction)))
        ratio = ops.where(shampoo_norm > 0, graft_norm / ops.maximum(shampoo_norm, _TINY), 0.0)
        use_shampoo = ops.greater_equal(self.iterations, self.start_preconditioning_step)
        return ops.where(use_shampoo, shampoo * ratio, graft_direction)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "max_block_size": self.max_block_size,
                "preconditioning_compute_steps": self.preconditioning_compute_steps,
                "start_preconditioning_step": self.start_preconditioning_step,
                "graft": self.graft,
                "graft_beta_2": self.graft_beta_2,
                "graft_epsilon": self.graft_epsilon,
                "inverse_root": self.inverse_root,
                "newton_iterations": self.newton_iterations,
            }
        )
        return config
