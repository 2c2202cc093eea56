"""Sharpness-Aware Minimization (SAM, Foret et al. 2021) and adaptive SAM (ASAM, Kwon et al. 2021).

SAM needs the gradient at a perturbed point ``w + e(w)``, so it takes two
forward/backward passes per step. Three ways to use it:

1. ``model.fit``: wrap the model, compile with a :class:`SAM` optimizer::

       model = SAMModel(base_model)
       model.compile(optimizer=SAM(keras.optimizers.SGD(0.1, momentum=0.9), rho=0.05), loss=...)
       model.fit(x, y)

   :class:`SAMModel`'s ``train_step`` does both passes (TensorFlow, JAX with
   or without ``jit_compile``, PyTorch).
2. The custom-loop ``Trainer`` hook, :meth:`SAM.compute_gradients` (or the
   function :func:`sam_gradients`)::

       loss, grads = sam.compute_gradients(loss_fn, variables)
       sam.apply(grads, variables)

   ``loss_fn`` is a zero-argument closure returning the scalar loss (e.g. a
   forward pass on the current batch); ``variables`` are the ``keras.Variable``
   objects to differentiate (``model.trainable_variables``). It returns the loss
   at ``w`` (for logging) and the gradients of ``loss_fn`` at ``w + e(w)``, in
   the order of ``variables``. The weights are never modified: the second pass
   reads ``w + e`` through a ``keras.StatelessScope``, so nothing needs restoring
   and non-trainable state updated by the second pass (BatchNorm statistics) is
   discarded. Call it inside a ``tf.function`` (and a replica context under
   ``tf.distribute``: the perturbation then uses the replica's own gradient, the
   per-accelerator "m-sharpness" of the paper; the wrapper all-reduces the
   second gradients in ``apply``). If ``loss_fn`` returns a scaled loss (mixed
   precision), the returned gradients carry the same scale; ``e`` does not.
3. Any other loop: compute ``e = sam.perturbation(grads, variables)`` (the
   method; :func:`sam_perturbation` is the same formula without an optimizer),
   evaluate the gradient at ``w + e`` yourself and ``sam.apply`` it.

Compiling a plain ``keras.Model`` with ``SAM`` is refused on its first step
(a ``ValueError`` naming ``SAMModel`` and the Trainer): its ``train_step``
takes one gradient, so SAM would silently be its inner optimizer.

The math (:func:`sam_perturbation`) is written with ``keras.ops``; the
gradients need each backend's autodiff: :func:`sam_gradients` (the Trainer
hook) is TensorFlow-only, ``SAMModel.train_step`` has a TensorFlow, a JAX and
a PyTorch form (``_sam_backends.py``).
"""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit._compat.keras import loss_tracker, unscale_loss_for_distribution
from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers._sam_backends import jax_train_step, state_before, torch_train_step
from keras_trainkit.optimizers._sparse import densify_all
from keras_trainkit.optimizers.wrapper import OptimizerWrapper
from keras_trainkit.utils import validation as v


def sam_perturbation(grads, variables, rho=0.05, adaptive=False, eps=1e-12, eta=0.0):
    """The ascent step ``e(w)`` of SAM / ASAM, one tensor per variable.

    SAM:  ``e = rho * g / (||g||_2 + eps)``, the norm taken over all gradients.
    ASAM: ``e = rho * T^2 g / (||T g||_2 + eps)`` with ``T = |w| + eta``
    element-wise (``eta = 0`` is the common implementation; Kwon et al. also
    use ``eta = 0.01``). ``eps`` is added to the norm, outside the square root.
    A non-finite norm (an overflowing scaled loss) gives ``e = 0``. ``None``
    gradients give ``None``. A sparse gradient (``tf.IndexedSlices``, from an
    ``Embedding``) is first made dense (rows of a repeated id summed, absent
    rows zero: :func:`~keras_trainkit.optimizers._sparse.densify`), so ``g``
    is always the dense gradient and ``e`` a dense tensor.

    Example:
        >>> import numpy as np
        >>> e = sam_perturbation([np.array([3.0, 4.0])], [np.zeros(2)], rho=1.0)
        >>> np.round(np.asarray(e[0]), 3).tolist()
        [0.6, 0.8]
    """
    # Sparse rows are summed per index before any square: (a + b)**2, not a**2 + b**2.
    grads = densify_all(list(grads), list(variables))
    present = [(g, w) for g, w in zip(grads, variables) if g is not None]
    if not present:
        return [None for _ in grads]
    scaled = []
    for g, w in present:
        g = ops.cast(g, "float32")
        if adaptive:
            g = g * (ops.abs(ops.cast(w, "float32")) + eta)
        scaled.append(g)
    norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g in scaled))
    finite = ops.isfinite(norm)
    factor = rho / (norm + eps)

    def ascent(g, w):
        e = factor * (ops.abs(ops.cast(w, "float32")) + eta) * g if adaptive else factor * g
        return ops.cast(ops.where(finite, e, ops.zeros_like(e)), w.dtype)

    out = iter(ascent(g, w) for g, (_, w) in zip(scaled, present))
    return [None if g is None else next(out) for g in grads]


def _perturbed_gradients(loss_fn, variables, perturbation, state=()):
    """``(loss, gradients)`` at ``w + e`` (``perturbation``), the weights untouched; the
    ``(variable, value)`` pairs of ``state`` are read at those values and what the pass
    writes to any variable is discarded."""
    import tensorflow as tf

    pairs = [(var, var + e) for var, e in zip(variables, perturbation) if e is not None]
    points = [point for _, point in pairs]
    with tf.GradientTape() as tape:
        tape.watch(points)
        with keras.StatelessScope(state_mapping=pairs + list(state)):
            loss = loss_fn()
    grads = iter(tape.gradient(loss, points))
    return loss, [None if e is None else next(grads) for e in perturbation]


def sam_gradients(loss_fn, variables, rho=0.05, adaptive=False, eps=1e-12, eta=0.0, state_variables=()):
    """The Trainer hook: ``(loss at w, gradients at w + e(w))`` for SAM / ASAM.

    The second pass reads ``state_variables`` as they were before the first
    (``model.non_trainable_variables``: the layers' random-seed states, so both
    passes of a step draw the same dropout masks, as in the authors' JAX code and
    in ``SAMModel`` on every backend; the next step draws new ones) and what it
    writes (BatchNorm statistics, seed states) is discarded.

    Args:
        loss_fn: zero-argument callable returning the scalar loss; it must read
            the weights through ``variables`` (a Keras model's forward pass does).
        variables: list of ``keras.Variable`` to differentiate.
        rho, adaptive, eps, eta: as in :func:`sam_perturbation`.
        state_variables: the other variables ``loss_fn`` reads and updates.

    Returns:
        ``(loss, grads)``: the loss at the current weights and the list of
        gradients at the perturbed weights. The weights are left unchanged.

    Example:
        >>> import keras
        >>> w = keras.Variable([1.0, 2.0])
        >>> loss, grads = sam_gradients(lambda: keras.ops.sum(w * w), [w], rho=0.1)
    """
    import tensorflow as tf

    variables = list(variables)
    for var in variables:
        if not isinstance(var, keras.Variable):
            raise TypeError(
                "sam_gradients needs keras.Variable objects (e.g. model.trainable_variables). "
                f"Received: variables=[..., {var!r}, ...]"
            )
    state = state_before(state_variables)
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, variables)
    perturbation = sam_perturbation(grads, variables, rho=rho, adaptive=adaptive, eps=eps, eta=eta)
    _, perturbed = _perturbed_gradients(loss_fn, variables, perturbation, state)
    perturbed = [None if g is None else p for g, p in zip(grads, perturbed)]
    return loss, perturbed


@register
class SAM(OptimizerWrapper):
    """Sharpness-Aware Minimization around any Keras optimizer (``adaptive=True``: ASAM).

    One SAM step, with ``g(w)`` the mini-batch gradient::

        e   = rho * g(w) / (||g(w)|| + eps)                  SAM
        e   = rho * T^2 g(w) / (||T g(w)|| + eps), T = |w| + eta   ASAM
        w  <- inner_update(w, g(w + e))

    The norm is global (over all variables). The optimizer itself applies the
    gradient it receives with the inner optimizer; the second gradient comes
    from :class:`SAMModel` (``model.fit``), :meth:`compute_gradients` (the
    custom-loop ``Trainer`` hook) or :meth:`perturbation` (a loop of one's own).
    Compiled into a plain ``keras.Model``, whose ``train_step`` takes one
    gradient only, it would silently train the inner optimizer alone: instead
    its first step raises a ``ValueError`` naming :class:`SAMModel` and the
    Trainer. ``apply`` refuses to run until :meth:`compute_gradients` or
    :meth:`perturbation` has been called once on this optimizer (a Python-side
    check, so it costs nothing per step in a compiled function).

    Args:
        optimizer: the inner ("base") optimizer: an instance, a name or a config.
        rho: radius of the perturbation, ``> 0``. Defaults to ``0.05`` (``0.5``
            to ``2.0`` is usual for ASAM).
        adaptive: ``True`` for ASAM's scale-invariant perturbation.
        eps: added to the norm, ``>= 0``. Defaults to ``1e-12``.
        eta: ASAM's offset in ``T = |w| + eta``, ``>= 0``. Defaults to ``0.0``.
        name: the optimizer's name.
        **kwargs: ``loss_scale_factor``.

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import SAM, SAMModel
        >>> base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model = SAMModel(base)
        >>> model.compile(optimizer=SAM(keras.optimizers.SGD(0.01), rho=0.05), loss="mse")
        >>> _ = model.fit(np.ones((8, 4)), np.zeros((8, 1)), verbose=0)

    References:
        Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for
        Efficiently Improving Generalization", ICLR 2021. Kwon, Kim, Park & Choi,
        "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning
        of Deep Neural Networks", ICML 2021.
    """

    def __init__(self, optimizer, rho=0.05, adaptive=False, eps=1e-12, eta=0.0, name=None, **kwargs):
        v.check_positive("rho", rho)
        v.check_type("adaptive", adaptive, bool)
        v.check_non_negative("eps", eps)
        v.check_non_negative("eta", eta)
        super().__init__(optimizer, name=name, **kwargs)
        self.rho = float(rho)
        self.adaptive = adaptive
        self.eps = float(eps)
        self.eta = float(eta)

    def perturbation(self, grads, variables):
        """``e(w)`` for these gradients: see :func:`sam_perturbation`."""
        self._two_pass_used = True
        return sam_perturbation(grads, variables, self.rho, self.adaptive, self.eps, self.eta)

    def compute_gradients(self, loss_fn, variables, state_variables=()):
        """The Trainer hook: ``(loss at w, gradients at w + e(w))``; see :func:`sam_gradients`."""
        self._two_pass_used = True
        return sam_gradients(loss_fn, variables, self.rho, self.adaptive, self.eps, self.eta,
                             state_variables=state_variables)

    def wrapped_apply(self, grads, variables):
        """Refuse a step whose gradient was not taken at ``w + e(w)``, then apply it."""
        if not getattr(self, "_two_pass_used", False):
            raise ValueError(
                "The SAM optimizer needs the gradient at the perturbed weights w + e(w), "
                "which a plain keras.Model's train_step never computes: compiled into it, "
                "SAM would silently train its inner optimizer alone. Wrap the model in "
                "`keras_trainkit.optimizers.SAMModel(model)` for model.fit, train with "
                "`keras_trainkit.training.Trainer(model, SAM(...), loss)`, or, in a loop of "
                "your own, take the gradient at w + sam.perturbation(grads, variables) (or "
                "use sam.compute_gradients) before calling apply. Received: "
                f"optimizer=SAM({type(self.inner_optimizer).__name__}) applied without "
                "SAM's second pass"
            )
        super().wrapped_apply(grads, variables)

    def get_config(self):
        config = super().get_config()
        config.update({"rho": self.rho, "adaptive": self.adaptive, "eps": self.eps, "eta": self.eta})
        return config


def _find_sam(optimizer):
    seen = optimizer
    while seen is not None:
        if isinstance(seen, SAM):
            return seen
        seen = getattr(seen, "inner_optimizer", None)
    raise TypeError(
        "SAMModel must be compiled with a keras_trainkit.optimizers.SAM optimizer "
        f"(possibly inside a LossScaleOptimizer). Received: optimizer={optimizer!r}"
    )


@keras.saving.register_keras_serializable(package="keras_trainkit")
class SAMModel(keras.Model):
    """A model wrapper whose ``train_step`` performs SAM's two passes in ``model.fit``.

    ``SAMModel(model)`` predicts exactly like ``model``; training (on the
    TensorFlow, JAX and PyTorch backends) computes, per batch, the loss and gradient at ``w``, the ascent
    ``e(w)`` from the compiled :class:`SAM` optimizer, the gradient at
    ``w + e`` (read through a ``keras.StatelessScope``: the weights are never
    modified), and lets the SAM optimizer apply it with its inner optimizer.
    Loss and metrics are those of the first pass (at ``w``). Non-trainable
    state (BatchNorm statistics, random-seed states) is updated by the first
    pass only, and the second pass reads it as the first did: both passes of a
    step draw the same dropout masks (as the authors' JAX code does), the next
    step new ones. Works with
    ``jit_compile=True``, ``tf.distribute`` (per-replica perturbation) and
    ``mixed_float16`` (the loss-scale optimizer wrapping SAM).

    Args:
        model: the ``keras.Model`` to train.
        **kwargs: ``keras.Model`` arguments (``name``).

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import SAM, SAMModel
        >>> model = SAMModel(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
        >>> model.compile(optimizer=SAM("sgd", rho=0.05), loss="mse")
        >>> _ = model.fit(np.ones((4, 3)), np.zeros((4, 1)), verbose=0)

    Reference: Foret et al., ICLR 2021 (see :class:`SAM`).
    """

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"Argument `model` must be a keras.Model. Received: model={model!r}")
        self.inner_model = model

    def call(self, inputs, training=None):
        return self.inner_model(inputs, training=training)

    def train_step(self, *args):
        """SAM's two passes; on JAX ``(state, data) -> (logs, state)``, else ``data -> logs``."""
        sam = _find_sam(self.optimizer)
        backend = keras.backend.backend()
        if backend == "jax":
            return jax_train_step(self, sam, *args)
        if backend == "torch":
            return torch_train_step(self, sam, *args)
        return self._tensorflow_train_step(sam, *args)

    def _tensorflow_train_step(self, sam, data):
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        state = state_before(self.non_trainable_variables)  # as the second pass reads them

        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            loss_tracker(self).update_state(
                unscale_loss_for_distribution(loss),  # as Keras's own train_step
                sample_weight=tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0],
            )
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        perturbation = sam.perturbation(grads, variables)

        def perturbed_loss():
            pred = self(x, training=True)
            second = self.compute_loss(x=x, y=y, y_pred=pred, sample_weight=sample_weight, training=True)
            return self.optimizer.scale_loss(second)

        _, perturbed = _perturbed_gradients(perturbed_loss, variables, perturbation, state)
        perturbed = [None if g is None else p for g, p in zip(grads, perturbed)]
        self.optimizer.apply(perturbed, variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.inner_model)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)
