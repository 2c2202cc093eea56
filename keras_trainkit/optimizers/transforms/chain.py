"""``GradientChain``: the one runner of gradient transforms, used by every path.

``TransformedOptimizer`` (``model.fit``), the callbacks that attach transforms
to a compiled optimizer (``GradientClipping``, ``TrainingMonitor``) and the
``Trainer`` all run their transforms through :meth:`GradientChain.apply`, so a
chain means the same thing wherever it runs.
"""

from __future__ import annotations

from keras_trainkit.optimizers._conditional import branch_tensors, run_where
from keras_trainkit.optimizers.transforms._registry import REGISTRY
from keras_trainkit.optimizers.transforms.base import GradientTransform
from keras_trainkit.optimizers.transforms.skipping import SkipTransform
from keras_trainkit.utils.validation import check_bool


def resolve_transforms(transforms, argument="transforms", allow_callables=False):
    """A list of transforms from instances, names or config dicts (or one of them).

    With ``allow_callables`` any callable ``t(grads, variables) -> grads`` is
    taken as it is (the Trainer's ``gradient_transforms``). Transform names
    must be distinct: they name the state variables and the statistics.
    """
    if transforms is None:
        return []
    if isinstance(transforms, (GradientTransform, str, dict)) or (
        allow_callables and callable(transforms) and not isinstance(transforms, (list, tuple))
    ):
        transforms = [transforms]
    kinds = "gradient transforms (instances, names or config dicts)"
    if allow_callables:
        kinds = "gradient transforms or callables `t(grads, variables) -> grads`"
    if not isinstance(transforms, (list, tuple)):
        raise TypeError(f"Argument `{argument}` must be a list of {kinds}. Received: {argument}={transforms!r}")
    resolved = []
    for item in transforms:
        if isinstance(item, (GradientTransform, str, dict)):
            resolved.append(REGISTRY.get(item))
        elif allow_callables and callable(item):
            resolved.append(item)
        else:
            raise TypeError(f"Argument `{argument}` must hold {kinds}. Received: {argument}={transforms!r}")
    names = [t.name for t in resolved if isinstance(t, GradientTransform)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Argument `{argument}` must have distinct names (give each a `name=`); "
            f"{', '.join(duplicates)} appear more than once. Received: {argument}={resolved!r}"
        )
    return resolved


def run_if(pred, fn, grads, variables=()):
    """Run ``fn(grads)`` only where the scalar boolean ``pred`` holds.

    ``keras.ops.cond`` on TensorFlow and PyTorch; on JAX a ``lax.cond`` on the
    values of ``variables``, which must hold every variable ``fn`` assigns
    (:func:`~keras_trainkit.optimizers._conditional.run_where`).
    """
    run_where(pred, lambda: fn(grads), variables)


class GradientChain:
    """Gradient transforms applied in order, then an update.

    ``apply(grads, variables, update)`` computes ``g <- t_k(... t_1(g))`` and
    calls ``update(g)``. A :class:`SkipTransform` (``SkipNonFinite``) at
    position ``i`` first decides from the gradients it receives whether the
    step happens; the rest of the chain (transforms ``i+1 ... k`` and the
    update) then runs inside ``run_if(decision, rest, g)``. Skipping is part of
    the structure, as in optax's ``apply_if_finite``: on a skipped step the
    later transforms' state, the weights, the optimizer slots and the step
    counter are unchanged, and the earlier transforms have run (their state
    records that step, as an observer should).

    Args:
        transforms: ``GradientTransform`` instances, names or config dicts
            (with ``allow_callables``, also callables ``t(grads, variables)``).
        allow_callables: accept plain callables as transforms.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers.transforms import GradientChain, SkipNonFinite, ClipByGlobalNorm
        >>> w = keras.Variable([1.0, 1.0])
        >>> sgd = keras.optimizers.SGD(0.5)
        >>> chain = GradientChain([SkipNonFinite(None), ClipByGlobalNorm(1.0)])
        >>> sgd.build([w])
        >>> update = lambda g: sgd.apply(g, [w])
        >>> chain.apply([keras.ops.convert_to_tensor([3.0, 4.0])], [w], update, state_variables=sgd.variables)
        >>> [round(float(v), 2) for v in keras.ops.convert_to_numpy(w)]
        [0.7, 0.6]
        >>> chain.apply([keras.ops.convert_to_tensor([float("nan"), 0.0])], [w], update, state_variables=sgd.variables)
        >>> [round(float(v), 2) for v in keras.ops.convert_to_numpy(w)], int(sgd.iterations)
        ([0.7, 0.6], 1)

    Paper: the composition follows optax's ``chain`` and ``apply_if_finite``
    (Babuschkin et al., "The DeepMind JAX Ecosystem", 2020).
    """

    def __init__(self, transforms=None, allow_callables=False):
        check_bool("allow_callables", allow_callables)
        self.transforms = resolve_transforms(transforms, allow_callables=allow_callables)

    def __len__(self):
        return len(self.transforms)

    def build(self, variables):
        """Create every transform's state for the model ``variables`` (outside any trace)."""
        for transform in self.transforms:
            if isinstance(transform, GradientTransform) and not transform.built:
                transform.build(list(variables))

    @property
    def variables(self):
        """The state variables of every transform, in chain order."""
        return [v for t in self.transforms if isinstance(t, GradientTransform) for v in t.variables]

    @property
    def carried_variables(self):
        """The transforms' state a step reads from earlier steps (``carried_variables`` of each)."""
        return [v for t in self.transforms if isinstance(t, GradientTransform) for v in t.carried_variables]

    def get_statistics(self):
        """``{"<transform name>/<statistic>": float}`` of every transform (for logs)."""
        return {
            f"{t.name}/{key}": value
            for t in self.transforms if isinstance(t, GradientTransform)
            for key, value in t.get_statistics().items()
        }

    def raise_if_stopped(self):
        """Raise the error of a transform that stopped training in the graph (under XLA)."""
        for transform in self.transforms:
            check = getattr(transform, "raise_if_exhausted", None)
            if check is not None:
                check()

    def apply(self, grads, variables, update, run_if=None, state_variables=()):
        """Run the chain on ``grads`` and hand the result to ``update(grads)``.

        ``run_if(pred, fn, grads)`` runs ``fn(grads)`` only where ``pred``
        holds. The default is ``keras.ops.cond`` on TensorFlow and PyTorch;
        on JAX, where a ``cond`` branch cannot assign variables, a ``lax.cond``
        on the values of ``variables``, the chain's own state and
        ``state_variables`` (the optimizer's slots and step counter that
        ``update`` assigns: list them all), the rest of the chain in the branch
        taken. A caller inside a ``tf.distribute`` replica context passes a
        ``run_if`` that works there (``OptimizerWrapper.run_if``).
        """
        variables = list(variables)
        self.build(variables)
        if run_if is None:
            watched = variables + self.variables + list(state_variables)
            run_if = lambda pred, fn, g: run_where(pred, lambda: fn(g), watched)  # noqa: E731
        self._run_from(0, list(grads), variables, update, run_if)

    def _run_from(self, start, grads, variables, update, run_if):
        for index in range(start, len(self.transforms)):
            transform = self.transforms[index]
            if isinstance(transform, SkipTransform):
                decision = transform.decide(grads, variables)
                grads = list(transform(grads, variables))

                def rest(g, after=index + 1):
                    self._run_from(after, branch_tensors(list(g)), variables, update, run_if)

                run_if(decision, rest, grads)
                return
            grads = list(transform(grads, variables))
        update(grads)
