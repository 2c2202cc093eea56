"""``OptimizerWrapper``: a Keras optimizer that drives another ("inner") optimizer.

The wrapper is itself a ``keras.optimizers.Optimizer`` (usable in ``compile()``)
and delegates ``learning_rate`` (get/set, schedules included), ``iterations``,
``build``, ``apply``, ``scale_loss`` and ``finalize_variable_values`` to the
inner optimizer. ``wrapper.variables`` lists the wrapper's own variables, then
every variable of the inner optimizer, so ``model.save``/``load_model`` and
``tf.train.Checkpoint`` keep the inner slots. ``get_config`` serializes the
inner optimizer; ``from_config`` rebuilds it.

How a subclass hooks in (each hook is optional)::

    class MyWrapper(OptimizerWrapper):
        def build(self, variables):
            super().build(variables)          # builds the inner optimizer first
            self.slow = [self.add_variable_from_reference(v, "slow") for v in variables]

        def transform_gradients(self, grads, variables):
            return [g * 0.5 for g in grads]   # (grads, variables) -> grads

        def after_inner_step(self, variables):
            ...                               # runs after the inner update

``apply`` runs, in order: build if needed, gradient aggregation across
replicas (``tf.distribute``: gradients are all-reduced once, so every hook
sees the same global gradient on every replica), ``transform_gradients``,
``apply_inner`` (the inner optimizer's update and step counter), and
``after_inner_step``. A subclass needing a different flow overrides
``wrapped_apply(grads, variables)``; ``apply_inner_if(pred, grads, variables)``
runs the inner update only where the scalar boolean ``pred`` holds (skipped
steps leave weights, slots and ``iterations`` unchanged), working under
``tf.distribute`` and XLA alike.

Base-optimizer features (``weight_decay``, ``clipnorm``, ``use_ema``,
gradient accumulation, ...) belong to the inner optimizer: set them there. A
wrapper that rewrites the weights after the inner step refuses an inner
``use_ema`` (:func:`check_inner_ema_off`): Keras averages inside that step.
The inner optimizer's ``loss_scale_factor`` moves to the wrapper, so the
wrapper's hooks see unscaled gradients. A ``LossScaleOptimizer`` inside a
wrapper is refused (:func:`check_no_loss_scale_inside`): it must be the
outermost optimizer, ``LossScaleOptimizer(wrapper)``, as ``mixed_float16``
builds it.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_trainkit._compat.tensorflow import strategy_supports_no_merge_call
from keras_trainkit.optimizers._conditional import run_where
from keras_trainkit.optimizers._registry import REGISTRY, register
from keras_trainkit.optimizers._sparse import densify_all
from keras_trainkit.utils.validation import check_positive, check_type

_BASE_DEFAULTS = {
    "learning_rate": None,
    "weight_decay": None,
    "clipnorm": None,
    "global_clipnorm": None,
    "clipvalue": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "gradient_accumulation_steps": None,
}


def _tf_distribution():
    """``(tf, replica_context)`` inside a replica context of a real strategy, else ``None``."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or tf.distribute.get_strategy().num_replicas_in_sync <= 1:
        return None
    return tf, context


def check_inner_ema_off(wrapper_name, optimizer, why):
    """Raise ``ValueError`` if a leaf of ``optimizer`` sets ``use_ema``.

    Keras updates its moving average inside the inner step, from the weights the
    inner step wrote; a wrapper that then rewrites those weights (``why``) leaves
    an average of weights the model never had.
    """
    from keras_trainkit.optimizers.control import leaf_optimizers  # control imports this module

    for leaf in leaf_optimizers(optimizer):
        if leaf.use_ema:
            raise ValueError(
                f"Argument `optimizer` of {wrapper_name} must not set `use_ema`: Keras updates the "
                f"average inside the inner step, before {why}, so it would average weights the "
                "model never had (and `finalize_variable_values` would put them in the model). "
                "Drop `use_ema`, or average the weights with the callback "
                "keras_trainkit.callbacks.SWA. Received: optimizer.use_ema=True"
            )


def check_no_loss_scale_inside(wrapper_name, optimizer):
    """Raise ``ValueError`` if ``optimizer`` is or wraps a ``keras.optimizers.LossScaleOptimizer``.

    A loss-scale optimizer divides the gradients by its dynamic scale (``2**15``
    at first), assuming ``model.optimizer.scale_loss`` multiplied the loss by
    it. Inside a wrapper nothing does (the wrapper's ``scale_loss`` and the
    one of a ``LossScaleOptimizer`` that ``mixed_float16`` puts around it use
    their own scale): every step would be about ``2**15`` times too small and
    training would silently stall. It must be the outermost optimizer.
    """
    from keras_trainkit.optimizers.control import wrapper_chain  # control imports this module

    chain = wrapper_chain(optimizer)
    if any(isinstance(link, keras.optimizers.LossScaleOptimizer) for link in chain):
        nested = "".join(f"{type(link).__name__}(" for link in chain[:-1])
        received = nested + type(chain[-1]).__name__ + ")" * (len(chain) - 1)
        raise ValueError(
            f"Argument `optimizer` of {wrapper_name} must not be or wrap a "
            "keras.optimizers.LossScaleOptimizer: it would divide the gradients by a loss "
            "scale the loss was never multiplied by, so training would silently stall. Put "
            f"it outside: LossScaleOptimizer({wrapper_name}(...)), or compile under the "
            f"mixed_float16 policy, which adds it. Received: optimizer={received}"
        )


def check_no_weight_reset_inside(wrapper_name, optimizer, why):
    """Raise ``ValueError`` if ``optimizer`` is or wraps a wrapper that writes the weights
    from its own state (``Lookahead``, ``ScheduleFree``).

    Such a wrapper (marked ``resets_weights = True``) sets the weights from
    copies it keeps after the inner step (``Lookahead``'s synchronization to
    its slow weights, ``ScheduleFree``'s ``y = beta x + (1 - beta) z``); a
    wrapper outside it that rewrites the change of the weights (``why``) would
    treat that write as a step, so the weights would leave what the state says
    they are and training would silently differ. The resetting wrapper goes outside.
    """
    from keras_trainkit.optimizers.control import wrapper_chain  # control imports this module

    chain = wrapper_chain(optimizer)
    resetting = [link for link in chain if getattr(link, "resets_weights", False)]
    if resetting:
        outer = type(resetting[0]).__name__
        received = "".join(f"{type(link).__name__}(" for link in chain[:-1])
        received += type(chain[-1]).__name__ + ")" * (len(chain) - 1)
        raise ValueError(
            f"Argument `optimizer` of {wrapper_name} must not be or wrap a {outer}: it sets the "
            f"weights from its own state after its inner step and {why}, which would treat that as a step, so "
            f"training would silently differ. Put it outside: {outer}({wrapper_name}(...)). "
            f"Received: optimizer={received}"
        )


@register(abstract=True)
class OptimizerWrapper(keras.optimizers.Optimizer):
    """Base class of optimizers that wrap another Keras optimizer.

    Subclasses override ``transform_gradients(grads, variables) -> grads``,
    ``after_inner_step(variables)`` or, for a different flow,
    ``wrapped_apply(grads, variables)``; state goes in ``build`` with
    ``add_variable``/``add_variable_from_reference`` (saved and checkpointed with
    the inner optimizer's slots). Used alone it applies the inner optimizer
    unchanged: ``w_{t+1} = inner(w_t, g_t)``.

    Args:
        optimizer: the inner optimizer: a ``keras.optimizers.Optimizer``
            instance, a name (``"adam"``, ``"radam"``) or a config dict; not
            a ``LossScaleOptimizer`` (``ValueError``: put it outside).
        loss_scale_factor: optional static loss scale; defaults to the inner
            optimizer's, which is moved here.
        name: the optimizer's name.
        **kwargs: base-optimizer arguments other than these are refused with
            a ``ValueError``: set them on the inner optimizer.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers import OptimizerWrapper
        >>> opt = OptimizerWrapper(keras.optimizers.SGD(0.1))
        >>> round(float(opt.learning_rate), 6)
        0.1

    No paper: this is the shared machinery behind ``TransformedOptimizer``,
    ``Lookahead`` and ``SAM`` (Keras's own ``LossScaleOptimizer`` follows the
    same delegation pattern).
    """

    def __init__(self, optimizer, loss_scale_factor=None, name=None, **kwargs):
        for key, default in _BASE_DEFAULTS.items():
            if key in kwargs:
                value = kwargs.pop(key)
                if value != default:
                    raise ValueError(
                        f"Argument `{key}` is not accepted by {type(self).__name__}; "
                        f"set it on the wrapped optimizer instead. Received: {key}={value!r}"
                    )
        if kwargs:
            raise ValueError(
                f"{type(self).__name__} got unexpected arguments. Received: "
                + ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            )
        check_type("name", name, (str, type(None)))
        inner = self._resolve_optimizer(optimizer)
        check_no_loss_scale_inside(type(self).__name__, inner)
        if loss_scale_factor is not None:
            check_positive("loss_scale_factor", loss_scale_factor)
        if loss_scale_factor is None:
            loss_scale_factor = inner.loss_scale_factor
        super().__init__(learning_rate=0.0, loss_scale_factor=loss_scale_factor, name=name)
        self.inner_optimizer = inner
        # The wrapper unscales before its hooks; the inner must not unscale again.
        self.inner_optimizer.loss_scale_factor = None

    @staticmethod
    def _resolve_optimizer(optimizer):
        if isinstance(optimizer, keras.optimizers.Optimizer):
            return optimizer
        if isinstance(optimizer, dict) and not isinstance(optimizer.get("class_name"), str):
            raise ValueError(
                "Argument `optimizer` must be a keras.optimizers.Optimizer, an optimizer name "
                "or a config dict with a string `class_name` (as "
                "`keras.optimizers.serialize` writes it). Received: "
                f"optimizer={optimizer!r}"
            )
        if isinstance(optimizer, (str, dict)):
            resolved = REGISTRY.get(optimizer)
            if isinstance(resolved, keras.optimizers.Optimizer):
                return resolved
        raise ValueError(
            "Argument `optimizer` must be a keras.optimizers.Optimizer, an optimizer "
            f"name or a config dict. Received: optimizer={optimizer!r}"
        )

    # ------------------------------------------------------------------ state
    @property
    def variables(self):
        return self._variables[:] + list(self.inner_optimizer.variables)

    def build(self, variables):
        """Build the inner optimizer, then this wrapper (subclasses: call first)."""
        variables = list(variables)
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(variables)
        super().build(variables)

    # -------------------------------------------------------- delegation
    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        self.inner_optimizer.exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    # ------------------------------------------------------------- update
    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if not grads:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing `grads` without `variables`, the optimizer must already "
                    "be built: call `optimizer.build(trainable_variables)` first. "
                    "Received: trainable_variables=None"
                )
            variables = list(self._trainable_variables)
        else:
            variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(variables)
                self.built = True
        if len(grads) != len(variables):
            raise ValueError(
                f"Expected one gradient per variable ({len(variables)}). "
                f"Received: len(grads)={len(grads)}"
            )
        # Sparse gradients (tf.IndexedSlices) summed per index: hooks and inner see dense ones.
        grads = densify_all(grads, variables)
        if self.loss_scale_factor is not None:
            grads = [None if g is None else g / self.loss_scale_factor for g in grads]
        grads = self.aggregate_gradients(grads)
        with keras.name_scope(self.name, caller=self):
            self.wrapped_apply(grads, variables)

    def aggregate_gradients(self, grads):
        """Sum the gradients over replicas (``tf.distribute``); identity otherwise."""
        distribution = _tf_distribution()
        if distribution is None:
            return grads
        _, context = distribution
        present = [g for g in grads if g is not None]
        reduced = iter(context.all_reduce("sum", present)) if present else iter(())
        return [None if g is None else next(reduced) for g in grads]

    def wrapped_apply(self, grads, variables):
        """The step on aggregated gradients: transform, inner update, post-step hook."""
        grads = self.transform_gradients(grads, variables)
        self.apply_inner(grads, variables)
        self.after_inner_step(variables)

    def transform_gradients(self, grads, variables):
        """Hook: map aggregated ``grads`` (with ``None`` entries kept) to new grads."""
        return grads

    def after_inner_step(self, variables):
        """Hook: runs after the inner optimizer updated ``variables``."""
        return None

    def apply_inner(self, grads, variables):
        """Hand aggregated gradients to the inner optimizer (update + step count)."""
        distribution = _tf_distribution()
        if distribution is not None:
            # The inner optimizer all-reduces (sums) again, but a Keras optimizer
            # clips (clipnorm, global_clipnorm, clipvalue) each replica's part
            # before that: the first replica keeps the aggregated gradient, the
            # others pass g * 0 (zero; NaN where g is not finite, so a loss-scale
            # check decides alike on every replica). The sum is g, clipped as g.
            # Equal shares g / replicas would each be clipped at the threshold.
            _, context = distribution
            first = ops.equal(context.replica_id_in_sync_group, 0)
            grads = [None if g is None else g * ops.cast(first, g.dtype) for g in grads]
        self.inner_optimizer.apply(grads, variables)

    def apply_inner_if(self, pred, grads, variables, otherwise=None):
        """Run ``apply_inner`` only where the scalar boolean ``pred`` holds.

        Skipped steps leave weights, inner slots and ``iterations`` unchanged.
        ``otherwise`` (no arguments) runs in the other branch.
        """
        self.run_if(pred, self.apply_inner, grads, variables, otherwise=otherwise)

    def run_if(self, pred, fn, grads, variables, otherwise=None):
        """Run ``fn(grads, variables)`` (which may update the inner optimizer) where ``pred`` holds.

        Under a ``tf.distribute`` strategy the condition is evaluated in
        cross-replica context (as Keras's ``LossScaleOptimizer`` does), since a
        replica-context ``cond`` cannot contain the inner optimizer's
        ``merge_call``; ``pred`` must then be the same on every replica (true
        when computed from aggregated gradients). ``fn`` returns nothing.

        On JAX (where a ``cond`` branch cannot assign variables) a ``lax.cond``
        on the values of ``variables`` and of this optimizer's variables (its
        own, the inner optimizer's), the branch taken's values assigned after
        it (:func:`~keras_trainkit.optimizers._conditional.run_where`).
        """
        distribution = _tf_distribution()
        if distribution is not None and strategy_supports_no_merge_call():
            distribution = None
        if distribution is None:
            watched = list(variables) + list(self.variables)
            run_where(pred, lambda: fn(grads, variables), watched, otherwise=otherwise)
            return
        otherwise = otherwise or (lambda: None)
        tf, context = distribution

        def cross_replica(strategy, pred, grads):
            first = strategy.experimental_local_results(pred)[0]

            def run():
                strategy.extended.call_for_each_replica(fn, args=(grads, variables))

            def other():
                strategy.extended.call_for_each_replica(otherwise)

            ops.cond(first, run, other)

        context.merge_call(cross_replica, args=(pred, grads))

    # ------------------------------------------------------ serialization
    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "loss_scale_factor": self.loss_scale_factor,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = config.pop("optimizer")
        if isinstance(inner, dict):
            inner = keras.saving.deserialize_keras_object(inner, custom_objects=custom_objects)
        return cls(inner, **config)
