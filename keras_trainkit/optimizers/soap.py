"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al., 2024).

The math lives in small functions of tensors (``project``, ``project_back``,
``eigenbasis``, ``refresh_basis``); :class:`SOAP` is a thin Keras shell around
them. Kernels are cut into blocks exactly as by :class:`Shampoo`
(``shampoo.block_layout``), each block with its own pair of bases.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_trainkit.optimizers import _batched_linalg as batched_linalg
from keras_trainkit.optimizers._base import (
    TrainkitOptimizer,
    check_beta,
    check_epsilon,
    hyperparameter,
    state_dtype,
)
from keras_trainkit.optimizers._conditional import select, value_of
from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.shampoo import block_layout, block_view, matrix_shape, unblock
from keras_trainkit.utils import validation


def product(a, b):
    """``a @ b`` over the last two axes, in the operands' dtype.

    An ``einsum``, not ``ops.matmul``: Keras's ``matmul`` on PyTorch returns
    float32 for float64 operands (its JAX-style type promotion), and the next
    product would then mix float32 and float64, which PyTorch refuses.
    """
    return ops.einsum("...ij,...jk->...ik", a, b)


def project(blocks, left, right):
    """``Q_L^T B Q_R`` for every block (batched; the transpose folded into the product)."""
    return product(ops.einsum("...ji,...jk->...ik", left, blocks), right)


def project_back(blocks, left, right):
    """``Q_L B Q_R^T`` for every block: the inverse rotation of :func:`project`."""
    return ops.einsum("...ij,...kj->...ik", product(left, blocks), right)


def eigenbasis(stat):
    """Eigenvectors of symmetric matrices as columns, largest eigenvalue first."""
    _, vectors = batched_linalg.eigh(stat)
    return ops.flip(vectors, axis=-1)


def refresh_basis(stat, basis):
    """One power-iteration step with QR (the SOAP paper's Algorithm 4).

    ``P = S Q``; the columns are ordered by the estimated eigenvalues
    ``diag(Q^T S Q)``, largest first, and ``Q' = qr(P[:, order]).Q``. Returns
    ``(Q', order)``: the second moment, kept in the rotated coordinates,
    must be permuted by ``order`` along the same axis.
    """
    power = product(stat, basis)
    estimates = ops.sum(basis * power, axis=-2)
    order = ops.argsort(-estimates, axis=-1)
    columns = ops.broadcast_to(ops.expand_dims(order, -2), power.shape)
    q, _ = batched_linalg.qr(ops.take_along_axis(power, columns, axis=-1))
    return q, order


def padding_diagonal(dim: int, blocks: int, size: int) -> np.ndarray | None:
    """``(blocks, size)``: 1 on the zero-padded entries of the last block, or ``None``.

    Added to a padded block's statistic before its eigenvectors are taken, it
    gives the padded coordinates their own eigenvalue, so a basis never mixes
    them with the real coordinates' null space (at the first step a statistic
    has rank one, and the padding would otherwise share its zero eigenvalue).
    """
    padding = blocks * size - dim
    if padding == 0:
        return None
    mask = np.zeros((blocks, size), dtype="float32")
    mask[-1, size - padding :] = 1.0
    return mask


@register(aliases=("soap",))
class SOAP(TrainkitOptimizer):
    """SOAP: Adam run in the eigenbasis of Shampoo's Kronecker factors, refreshed periodically.

    Every variable of rank >= 2 is viewed as the matrix ``prod(shape[:-1]) x
    shape[-1]`` and cut into blocks of at most ``max_block_size`` rows and
    columns (as by :class:`Shampoo`: the fewest blocks, made even; e.g. 784 ->
    7 x 112). For each block ``G`` of the gradient, with ``s = t - 1`` (``t``
    the update count from 1)::

        L <- beta_s * L + (1 - beta_s) * G G^T           R <- beta_s * R + (1 - beta_s) * G^T G
        t = 1:  Q_L, Q_R = eigenvectors of L, R (largest first); no step
        t >= 2: G' = Q_L^T G Q_R
                m  = beta_1 * m + (1 - beta_1) * G       (m in the original coordinates)
                v  = beta_2 * v + (1 - beta_2) * G'**2   (in the rotated coordinates)
                U  = Q_L ((Q_L^T m Q_R) / (sqrt(v) + epsilon)) Q_R^T
                w <- w - lr * sqrt(1 - beta_2**s) / (1 - beta_1**s) * U
                w <- w - lr * wd * w
                every ``precondition_frequency`` steps (s % f == 0): Q_L, Q_R <- one
                power-iteration step with QR on L, R; v permuted with the columns

    with ``beta_s = shampoo_beta`` (``beta_2`` when ``None``). Variables of rank
    < 2 get the same Adam step with no rotation. ``m`` is stored rotated,
    ``Q_L^T m Q_R`` (the same numbers, two products a step fewer: six instead
    of eight), and turned into the new bases exactly when they are refreshed. The first gradient only
    seeds the statistics (the authors' code and pytorch-optimizer skip the step).

    Conventions, pinned in ``tests/optimizers/test_reference_soap.py`` (this
    class equals pytorch-optimizer's ``SOAP`` with ``merge_dims=False``,
    ``precondition_1d=False``, ``normalize_gradient=False`` on 2-D kernels that
    fit in one block; a larger kernel equals it run on each block as a
    separate parameter, and an N-D kernel on its matrix view):

    * **Epsilon** outside the square root of the un-corrected ``v``, the bias
      correction folded into the step size (Keras's ``Adam``, the authors').
    * **Weight decay** decoupled, scaled by the learning rate, applied *after*
      the step to the updated weights (the authors' and pytorch-optimizer's
      order; the Keras base class decays before). pytorch-optimizer's default
      ``weight_decay=1e-2``; ours is ``None``.
    * **Eigenvectors and QR**: the orientation of each basis vector, and the
      basis inside an eigenspace of repeated eigenvalues, are whatever the
      backend's ``eigh``/``qr`` return. Signs cancel (each vector enters twice);
      where a statistic is rank-deficient (before it has seen as many
      gradients as its side is long) the basis of its null space (when it has
      two or more dimensions) differs between libraries and Keras backends, and
      so do the trajectories, as they would between two LAPACK builds. The refresh orders columns by estimated eigenvalue, largest
      first, before the QR, as the authors do (the order changes the QR).
    * **Blocks and shapes**: pytorch-optimizer rotates every axis of an N-D
      tensor (or merges small axes with ``merge_dims``) and leaves axes longer
      than ``max_precondition_dim`` unrotated; we use Shampoo's matrix view and
      blocks, so memory and time per step are bounded by the block size.
    * **Precision**: statistics, bases and ``v`` are float32 for float16 and
      bfloat16 variables (``eigh`` and ``qr`` in half precision are neither
      available everywhere nor accurate), and so is the rotated ``m``.

    Cost (``benchmarks/optimizer_step.py --cpu-time``, MLP 784-512-512-10,
    batch 128, one thread): 5.8x an Adam step at the defaults, where
    pytorch-optimizer's SOAP is 10.1x torch's AdamW; 11.4x with
    ``max_block_size=1024`` (the same algorithm as theirs on these kernels;
    TensorFlow's single-thread products and QR are slower than PyTorch's,
    see ``docs/benchmarks.md``).

    Args:
        learning_rate: float >= 0, a schedule or a callable. Defaults to ``3e-3``.
        beta_1: momentum decay, in ``[0, 1)``. Defaults to ``0.95``.
        beta_2: second-moment decay, in ``[0, 1)``. Defaults to ``0.95``.
        shampoo_beta: decay of the statistics ``L, R`` in ``[0, 1)``, or
            ``None`` for ``beta_2``. Defaults to ``None``.
        epsilon: ``> 0``, see above. Defaults to ``1e-8``.
        precondition_frequency: refresh the bases every this many updates,
            ``>= 1``. Defaults to ``10``.
        max_block_size: largest side of a block, ``>= 1``. Memory per kernel of
            ``m x n`` is about ``6 m n`` (``L, R, Q_L, Q_R, m, v``) when the
            blocks are square; the products per step, ``6 m n (b_r + b_c)``
            flops for blocks of ``b_r x b_c``, grow linearly with it.
            Defaults to ``256``.
        weight_decay: ``None``, a float >= 0 or a schedule of the update count.
        exclude_from_weight_decay: regular expressions of variable names not to decay.
        **kwargs: Keras optimizer arguments (``clipnorm``, ``use_ema``, ...).

    Example:
        >>> import keras, numpy as np, keras_trainkit as tk
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> model.compile(optimizer=tk.optimizers.SOAP(3e-3, weight_decay=0.01), loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 2)), verbose=0)

    Reference:
        Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade,
        "SOAP: Improving and Stabilizing Shampoo using Adam", ICLR 2025,
        https://arxiv.org/abs/2409.11321
    """

    _applies_own_weight_decay = True

    def __init__(
        self,
        learning_rate=3e-3,
        beta_1=0.95,
        beta_2=0.95,
        shampoo_beta=None,
        epsilon=1e-8,
        precondition_frequency=10,
        max_block_size=256,
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
        self.beta_1 = check_beta("beta_1", beta_1)
        self.beta_2 = check_beta("beta_2", beta_2)
        self.shampoo_beta = None if shampoo_beta is None else check_beta("shampoo_beta", shampoo_beta)
        self.epsilon = check_epsilon("epsilon", epsilon)
        self.precondition_frequency = int(
            validation.check_positive("precondition_frequency", precondition_frequency, integer=True)
        )
        self.max_block_size = int(validation.check_positive("max_block_size", max_block_size, integer=True))

    @property
    def _statistic_beta(self) -> float:
        return self.beta_2 if self.shampoo_beta is None else self.shampoo_beta

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities, self._blocks = [], [], {}
        for variable in var_list:
            if len(variable.shape) < 2:
                self._momentums.append(self.add_variable_from_reference(variable, "momentum"))
                self._velocities.append(self.add_variable_from_reference(variable, "velocity"))
                continue
            momentum, velocity = self._add_block_slots(variable)
            self._momentums.append(momentum)
            self._velocities.append(velocity)

    def _add_block_slots(self, variable):
        """Create ``L, R, Q_L, Q_R`` for a kernel; return its rotated moments ``(m, v)``."""
        layout = block_layout(variable.shape, self.max_block_size)
        nr, nc, br, bc = layout
        dtype = state_dtype(variable.dtype)
        prefix = variable.path.replace("/", "_")

        def slot(shape, name):
            return self.add_variable(shape, initializer="zeros", dtype=dtype, name=f"{prefix}_{name}")

        m, n = matrix_shape(variable.shape)
        self._blocks[self._var_key(variable)] = {
            "layout": layout,
            "dtype": dtype,
            "stats": (slot((nr, nc, br, br), "stat_left"), slot((nr, nc, bc, bc), "stat_right")),
            "bases": (slot((nr, nc, br, br), "basis_left"), slot((nr, nc, bc, bc), "basis_right")),
            "padding": (
                _per_block(padding_diagonal(m, nr, br), nr, nc, axis=0),
                _per_block(padding_diagonal(n, nc, bc), nr, nc, axis=1),
            ),
        }
        return slot((nr, nc, br, bc), "momentum"), slot((nr, nc, br, bc), "velocity")

    def update_step(self, gradient, variable, learning_rate):
        """One update of ``variable``, written as values (see :meth:`_kernel_step`)."""
        index = self._get_variable_index(variable)
        first = ops.equal(self.iterations, 0)
        m, v = self._momentums[index], self._velocities[index]
        if len(variable.shape) < 2:
            # The first gradient only seeds the statistics: the step is computed and discarded.
            new_m, new_v, new_w = self._adam_values(gradient, variable, m, v, learning_rate)
            self._assign_unless(first, [(m, new_m), (v, new_v), (variable, new_w)])
            return
        self._kernel_step(gradient, variable, m, v, first, learning_rate)

    def _kernel_step(self, gradient, variable, m, v, first, learning_rate):
        """Statistics, bases, rotated Adam step and refresh of a kernel, assigned after the conds.

        The conditionals (eigenvectors at the first update, the refresh every
        ``precondition_frequency`` updates) return values and the variables
        are assigned after them: a JAX ``cond`` branch cannot assign variables
        (``UnexpectedTracerError`` under ``jax.jit``). The rotated step is
        computed on every update and discarded at the first.
        """
        blocks = self._blocks[self._var_key(variable)]
        gradient_blocks = block_view(ops.cast(gradient, blocks["dtype"]), blocks["layout"])
        stats = self._accumulate_statistics(gradient_blocks, blocks["stats"])
        (left_basis, right_basis), padding = blocks["bases"], blocks["padding"]
        left, right = ops.cond(
            first,
            lambda: tuple(eigenbasis(self._with_padding(s, p)) for s, p in zip(stats, padding)),
            lambda: (value_of(left_basis), value_of(right_basis)),
        )
        new_m, new_v, new_w = self._rotated_values(gradient_blocks, variable, m, v, left, right, learning_rate)
        new_m, new_v = select(first, m, new_m), select(first, v, new_v)
        due = ops.logical_and(
            ops.logical_not(first), ops.equal(self.iterations % self.precondition_frequency, 0)
        )
        new_m, new_v, left, right = ops.cond(
            due,
            lambda: self._refreshed(stats, padding, left, right, new_m, new_v),
            lambda: (new_m, new_v, left, right),
        )
        self._assign_unless(first, [(variable, new_w)])
        for slot, value in ((m, new_m), (v, new_v), (left_basis, left), (right_basis, right)):
            self.assign(slot, value)

    def _assign_unless(self, condition, pairs):
        """``slot <- where(condition, slot, value)`` for each ``(slot, value)`` (values in the slot's dtype)."""
        for slot, value in pairs:
            self.assign(slot, select(condition, slot, ops.cast(value, slot.dtype)))

    def _step_size(self, learning_rate, dtype):
        """``lr * sqrt(1 - beta_2**s) / (1 - beta_1**s)`` with ``s = iterations`` (used where >= 1)."""
        s = ops.cast(self.iterations, dtype)
        correction_2 = 1.0 - ops.power(ops.cast(self.beta_2, dtype), s)
        correction_1 = 1.0 - ops.power(ops.cast(self.beta_1, dtype), s)
        return ops.cast(learning_rate, dtype) * ops.sqrt(correction_2) / correction_1

    def _new_weights(self, variable, direction, learning_rate):
        """``w - step_size * direction``, then the decoupled decay of the new weights (state dtype)."""
        dtype = state_dtype(variable.dtype)
        step_size = self._step_size(learning_rate, dtype)
        new_value = ops.cast(value_of(variable), dtype) - step_size * ops.cast(direction, dtype)
        decay = self._decay_rate(variable)
        if decay is not None:
            new_value = new_value - ops.cast(learning_rate, dtype) * decay * new_value
        return new_value

    def _adam_values(self, gradient, variable, m, v, learning_rate):
        """``(m, v, w)`` after an Adam step of a variable of rank < 2."""
        gradient = ops.cast(gradient, state_dtype(variable.dtype))
        m, v = value_of(m), value_of(v)
        beta_1, beta_2, epsilon = (hyperparameter(x, m.dtype) for x in (self.beta_1, self.beta_2, self.epsilon))
        m = m + (gradient - m) * (1.0 - beta_1)
        v = v + (ops.square(gradient) - v) * (1.0 - beta_2)
        return m, v, self._new_weights(variable, m / (ops.sqrt(v) + epsilon), learning_rate)

    def _accumulate_statistics(self, gradient_blocks, stats):
        """Assign the EMAs ``L, R`` of ``G G^T``, ``G^T G``; return their new values."""
        left, right = (value_of(stat) for stat in stats)
        weight = 1.0 - hyperparameter(self._statistic_beta, left.dtype)
        left = left + (ops.einsum("...ij,...kj->...ik", gradient_blocks, gradient_blocks) - left) * weight
        right = right + (ops.einsum("...ji,...jk->...ik", gradient_blocks, gradient_blocks) - right) * weight
        self.assign(stats[0], left)
        self.assign(stats[1], right)
        return left, right

    def _with_padding(self, stat, padding):
        """``stat`` plus the padded coordinates' own eigenvalue ``-(trace / size + 1e-30)``.

        Negative, so distinct from every real eigenvalue (>= 0), and of the
        statistic's own scale, so it costs the real eigenvectors no accuracy.
        """
        if padding is None:
            return stat
        size = stat.shape[-1]
        mask = ops.convert_to_tensor(padding, dtype=stat.dtype)
        value = -(ops.sum(ops.diagonal(stat, axis1=-2, axis2=-1), axis=-1) / size + 1e-30)
        diagonal = ops.expand_dims(mask * ops.expand_dims(value, -1), -1) * ops.eye(size, dtype=stat.dtype)
        return stat + diagonal

    def _rotated_values(self, gradient_blocks, variable, m, v, left, right, learning_rate):
        """``(m, v, w)`` after the Adam step in the bases ``left``, ``right``."""
        m, v = value_of(m), value_of(v)
        rotated = project(gradient_blocks, left, right)
        # m is kept rotated: Q_L^T (EMA of G) Q_R = EMA of Q_L^T G Q_R while the bases stay.
        beta_1, beta_2, epsilon = (hyperparameter(x, m.dtype) for x in (self.beta_1, self.beta_2, self.epsilon))
        m = m + (rotated - m) * (1.0 - beta_1)
        v = v + (ops.square(rotated) - v) * (1.0 - beta_2)
        direction = unblock(project_back(m / (ops.sqrt(v) + epsilon), left, right), variable.shape)
        return m, v, self._new_weights(variable, direction, learning_rate)

    def _refreshed(self, stats, padding, left, right, m, v):
        """``(m, v, Q_L, Q_R)`` after the refresh: ``m`` rotated into the new bases exactly, ``v``
        permuted with the columns (the paper's)."""
        new_left, order_left = refresh_basis(self._with_padding(stats[0], padding[0]), left)
        new_right, order_right = refresh_basis(self._with_padding(stats[1], padding[1]), right)
        change_left = ops.einsum("...ji,...jk->...ik", new_left, left)
        change_right = ops.einsum("...ji,...jk->...ik", right, new_right)
        m = product(product(change_left, m), change_right)
        rows = ops.broadcast_to(ops.expand_dims(order_left, -1), v.shape)
        permuted = ops.take_along_axis(v, rows, axis=-2)
        columns = ops.broadcast_to(ops.expand_dims(order_right, -2), v.shape)
        return m, ops.take_along_axis(permuted, columns, axis=-1), new_left, new_right

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "shampoo_beta": self.shampoo_beta,
                "epsilon": self.epsilon,
                "precondition_frequency": self.precondition_frequency,
                "max_block_size": self.max_block_size,
            }
        )
        return config


def _per_block(padding, row_blocks: int, col_blocks: int, axis: int):
    """A side's ``(blocks, size)`` padding mask for every block, ``(row_blocks, col_blocks, size)``.

    ``axis=0``: the mask of the rows (left statistics), ``axis=1``: of the columns.
    """
    if padding is None:
        return None
    mask = padding[:, None, :] if axis == 0 else padding[None, :, :]
    return np.ascontiguousarray(np.broadcast_to(mask, (row_blocks, col_blocks, padding.shape[1])))
