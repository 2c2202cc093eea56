"""Model-level penalties that need the inputs, and a model wrapper that adds them in ``fit``.

A weight regularizer sees one weight; a penalty such as the norm of the
input-output Jacobian needs the model and the batch. These penalties follow one
small protocol, shared by :class:`PenalizedModel` (``model.fit``) and by the
custom-loop ``keras_trainkit.training.Trainer``:

**Penalty protocol.** A penalty is a callable

    penalty(model, x, y=None, training=True) -> scalar tensor

* ``model``: the Keras model being trained (called as ``model(x, training=training)``);
* ``x``: the input batch (a tensor or a nested structure of tensors), ``y`` the
  targets (``None`` where the penalty does not need them; a penalty that does
  raises ``ValueError``);
* the return value is the already-weighted penalty (``factor * ...``), a float
  scalar averaged over the batch, to be *added* to the loss.

The caller invokes it **inside** its own differentiation with respect to the
weights (``model.fit``'s training step on any backend, the ``Trainer``'s
``tf.GradientTape``); the penalty takes its gradient with respect to the inputs
through :func:`keras_trainkit.utils.gradients.input_pullback`
(an inner tape on TensorFlow, ``jax.vjp`` of ``model.stateless_call`` on JAX,
``torch.autograd.grad(create_graph=True)`` on PyTorch), so the outer
differentiation goes through it (double backpropagation) and the penalty's
gradient reaches the weights. The penalty makes its own forward pass (an extra
``model(x)`` call; with ``training=True``, BatchNorm statistics are updated once
more and dropout draws a new mask). Under ``tf.distribute`` the caller scales it
like the loss (divide by the number of replicas), as :class:`PenalizedModel` does.

Any object with that signature can be used; the classes here are registered
(``keras_trainkit.regularizers.penalties.get("jacobian_penalty")``), serializable
and validated.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit.utils.gradients import input_pullback
from keras_trainkit.utils.registry import PACKAGE, Registry
from keras_trainkit.utils.validation import check_in, check_non_negative, check_seed, check_unrolled_count


class ModelPenalty:
    """Base class of model-level penalties: ``penalty(model, x, y=None, training=True)``.

    A subclass implements ``value(model, x, y, training)`` (the unweighted,
    batch-averaged penalty as a scalar tensor) and ``get_config``; calling the
    instance returns ``factor * value``. See the module docstring for the protocol.

    Args:
        factor: penalty weight (>= 0).
    """

    def __init__(self, factor: float = 0.01):
        check_non_negative("factor", factor)
        self.factor = float(factor)

    def value(self, model, x, y=None, training=True):  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model, x, y=None, training=True):
        value = self.value(model, x, y=y, training=training)
        return ops.convert_to_tensor(self.factor, dtype=value.dtype) * value

    def get_config(self) -> dict:
        return {"factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


REGISTRY = Registry("penalties", base_class=ModelPenalty, kind="model penalty",
                    module="keras_trainkit.regularizers.penalties")
register = REGISTRY.register


def _per_example_square_norm(gradients):
    """``sum_k ||g_k[i]||^2`` per example ``i`` over the input gradients ``g_k`` (``None``: unused)."""
    total = 0.0
    for g in gradients:
        if g is None:
            continue
        g = ops.reshape(g, (ops.shape(g)[0], -1))
        total = total + ops.sum(ops.square(g), axis=1)
    return total


def _flat_outputs(outputs):
    parts = [ops.reshape(o, (ops.shape(o)[0], -1)) for o in keras.tree.flatten(outputs)]
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)


@register(aliases=("jacobian_penalty", "jacobian"))
class JacobianPenalty(ModelPenalty):
    """Random-projection estimate of the squared Frobenius norm of the input-output Jacobian.

    Jacobian regularization (Hoffman, Roberts & Yaida 2019): for each example,
    with ``J = d f(x) / d x`` (``C`` outputs) and ``v`` drawn uniformly on the
    unit sphere of ``R^C``,

        ||J||_F^2 = C * E_v[ ||v^T J||^2 ],

    since ``E[v v^T] = I / C``. ``v^T J`` is one backward pass of ``v . f(x)``.
    The penalty averages ``num_projections`` such estimates and the batch:

        penalty = factor * mean_i (C / n_proj) * sum_p ||v_p^T J(x_i)||^2

    ``projection="gaussian"`` draws ``v ~ N(0, I)`` instead (``E[v v^T] = I``, no
    factor ``C``). Either estimate is unbiased; the sphere has lower variance.
    Outputs of any shape are flattened; gradients with respect to all float
    inputs are included. The model must treat examples independently (no
    BatchNorm in training mode across the batch) for the per-example reading.

    The projections are drawn with a ``keras.random.SeedGenerator`` (stateless
    random ops with a seed that advances on every draw), so the penalty runs
    under ``tf.config.experimental.enable_op_determinism()`` and a given
    ``seed`` repeats the same sequence of projections.

    Args:
        factor: penalty weight (>= 0); the paper's ``lambda_JR / 2``.
        num_projections: random projections per step (an integer in 1..1000,
            each one a backward pass; the paper uses 1).
        projection: ``"sphere"`` or ``"gaussian"``.
        seed: an integer in ``[0, 2**32 - 1]`` for a reproducible sequence of
            projections, or ``None`` for a random one.

    Example:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model = PenalizedModel(net, [JacobianPenalty(factor=0.01)])
        >>> model.compile("sgd", "mse")

    Reference:
        J. Hoffman, D. A. Roberts, S. Yaida, "Robust Learning with Jacobian
        Regularization", arXiv:1908.02729, 2019.
    """

    def __init__(self, factor: float = 0.01, num_projections: int = 1, projection: str = "sphere",
                 seed: int | None = None):
        super().__init__(factor)
        self.num_projections = check_unrolled_count("num_projections", num_projections)
        check_in("projection", projection, ("sphere", "gaussian"))
        self.projection = projection
        self.seed = check_seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="jacobian_penalty_seed")

    def value(self, model, x, y=None, training=True):
        outputs, pullback = input_pullback(model, x, _flat_outputs, training=training)
        total = 0.0
        for _ in range(self.num_projections):
            v = keras.random.normal(ops.shape(outputs), dtype=outputs.dtype, seed=self.seed_generator)
            if self.projection == "sphere":
                v = v / ops.norm(v, axis=1, keepdims=True)
            total = total + _per_example_square_norm(pullback(ops.stop_gradient(v)))
        if self.projection == "sphere":
            total = total * ops.cast(ops.shape(outputs)[1], total.dtype)
        return ops.mean(total) / self.num_projections

    def get_config(self):
        return {"factor": self.factor, "num_projections": self.num_projections,
                "projection": self.projection, "seed": self.seed}


@register(aliases=("input_gradient_penalty", "input_gradient", "double_backprop"))
class InputGradientPenalty(ModelPenalty):
    """Squared norm of the gradient of the loss with respect to the inputs.

    Gradient regularization / double backpropagation (Drucker & LeCun 1992,
    "DataGrad" in Varga, Csiszárik & Zombori 2017): with ``l_i`` the loss of
    example ``i``,

        penalty = factor * mean_i || d l_i / d x_i ||_2^2

    It needs the targets ``y``. ``loss`` is any Keras loss identifier; the
    default is ``SparseCategoricalCrossentropy(from_logits=True)``, matching the
    logits of ``keras_trainkit.models``. Per-example losses are taken unreduced,
    so the gradient of each example is not scaled by the batch size.

    Args:
        factor: penalty weight (>= 0).
        loss: a Keras loss name, config dict or ``keras.losses.Loss`` (``None``:
            sparse categorical cross-entropy on logits).

    Example:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model = PenalizedModel(net, [InputGradientPenalty(factor=0.1)])
        >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    Reference:
        D. Varga, A. Csiszárik, Z. Zombori, "Gradient Regularization Improves
        Accuracy of Discriminative Models", arXiv:1712.09936, 2017.
    """

    def __init__(self, factor: float = 0.01, loss=None):
        super().__init__(factor)
        if loss is None:
            resolved = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        else:
            try:
                resolved = keras.losses.get(loss)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"Argument `loss` must be a Keras loss identifier. Received: loss={loss!r}"
                ) from error
            if resolved is None or not callable(resolved):
                raise ValueError(f"Argument `loss` must be a Keras loss identifier. Received: loss={loss!r}")
        self.loss = loss if isinstance(loss, (str, type(None))) else keras.losses.serialize(resolved)
        self._loss_fn = resolved

    def _per_example(self, y, y_pred):
        if isinstance(self._loss_fn, keras.losses.Loss):
            return self._loss_fn.call(y, y_pred)
        return self._loss_fn(y, y_pred)

    def value(self, model, x, y=None, training=True):
        if y is None:
            raise ValueError("InputGradientPenalty needs the targets. Received: y=None")

        def summed_loss(y_pred):
            return ops.sum(ops.cast(self._per_example(y, y_pred), y_pred.dtype))

        total, pullback = input_pullback(model, x, summed_loss, training=training)
        return ops.mean(_per_example_square_norm(pullback(ops.ones_like(total))))

    def get_config(self):
        return {"factor": self.factor, "loss": self.loss}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PenalizedModel(keras.Model):
    """A ``keras.Model`` wrapper that adds model-level penalties to the loss in ``fit``.

    ``compute_loss`` (called by Keras's ``train_step`` and ``test_step`` inside
    the gradient tape) returns

        loss = compiled loss + weight regularizers + sum_k penalty_k(model, x, y, training)

    so the penalties' gradients (double backpropagation) reach the wrapped
    model's weights. The penalties' sum is also reported as the ``penalty``
    metric; ``loss`` includes it, in training and evaluation alike (like Keras's
    weight regularizers). Under ``tf.distribute`` the penalty is scaled like the
    loss. Every backend (TensorFlow, JAX under ``jit_compile``, PyTorch). The
    penalties' random-number generators (``JacobianPenalty``'s projections) are
    tracked as the model's state, so on JAX each step draws new projections and
    ``fit`` carries the seed from step to step.

    Args:
        model: the model to train (any ``keras.Model``).
        penalties: a penalty or a list of them (instances, names or configs
            resolved by ``keras_trainkit.regularizers.penalties.get``), or any
            callables following the protocol of this module (those are not saved).

    Example:
        >>> import keras
        >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model = PenalizedModel(net, ["jacobian_penalty"])
        >>> model.compile("sgd", "mse")

    The wrapped model is ``model.model``; save either (``.keras``): the wrapper
    reloads with its penalties.
    """

    def __init__(self, model, penalties=(), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"Argument `model` must be a keras.Model. Received: model={model!r}")
        if callable(penalties) or isinstance(penalties, (str, dict)):
            penalties = [penalties]
        resolved = []
        for penalty in penalties:
            if isinstance(penalty, (str, dict, ModelPenalty)):
                resolved.append(REGISTRY.get(penalty))
            elif callable(penalty):
                resolved.append(penalty)
            else:
                raise TypeError(f"Each penalty must be callable. Received: penalties={penalties!r}")
        self.model = model
        self.penalties = resolved
        # Tracked (as Keras tracks a layer's SeedGenerator): JAX's stateless training
        # step then carries their states; not saved in .keras files, like a layer's.
        self.penalty_seed_generators = [penalty.seed_generator for penalty in resolved
                                        if isinstance(getattr(penalty, "seed_generator", None),
                                                      keras.random.SeedGenerator)]
        self.penalty_tracker = keras.metrics.Mean(name="penalty")

    def build(self, input_shape):
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def penalty(self, x, y=None, training=True):
        """The sum of the penalties on the batch (unscaled by the replica count)."""
        total = None
        for penalty in self.penalties:
            value = penalty(self.model, x, y, training=training)
            total = value if total is None else total + value
        return ops.zeros(()) if total is None else total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        if not self.penalties:
            return loss
        penalty = self.penalty(x, y, training=training)
        self.penalty_tracker.update_state(penalty)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:
                penalty = penalty / replicas
        return loss + ops.cast(penalty, loss.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({
            "model": keras.saving.serialize_keras_object(self.model),
            "penalties": [keras.saving.serialize_keras_object(p) for p in self.penalties
                          if isinstance(p, ModelPenalty)],
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        penalties = [keras.saving.deserialize_keras_object(p, custom_objects=custom_objects)
                     for p in config.pop("penalties", [])]
        return cls(model, penalties, **config)


def get(identifier, **kwargs):
    """Return a model penalty from a name, a config dict or an instance.

    Example:
        >>> get("jacobian_penalty", factor=0.1, seed=0)
        JacobianPenalty(factor=0.1, num_projections=1, projection='sphere', seed=0)
    """
    return REGISTRY.get(identifier, **kwargs)


__all__ = ["InputGradientPenalty", "JacobianPenalty", "ModelPenalty", "PenalizedModel", "get"]
