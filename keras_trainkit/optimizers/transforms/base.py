"""``GradientTransform``: a small, stateful map ``(grads, variables) -> grads``.

One transform serves three callers: ``TransformedOptimizer`` (inside
``model.fit``), a callback, and a custom ``GradientTape`` loop. The protocol:

* ``t.build(variables)`` creates the transform's state as ``keras.Variable`` s
  (checkpointable, usable inside ``tf.function``/XLA); ``t(grads, variables)``
  builds lazily on first use.
* ``t(grads, variables) -> grads`` maps a list of gradients (``None`` entries
  are passed through) to new gradients, updating the state. Sparse gradients
  (``tf.IndexedSlices``) are made dense first (rows of one index summed).
* A :class:`~keras_trainkit.optimizers.transforms.SkipTransform`
  (``SkipNonFinite``) also decides whether the step happens; the chain runner
  (:class:`~keras_trainkit.optimizers.transforms.GradientChain`) runs the rest
  of the chain only where it does. Run several transforms through a
  ``GradientChain`` rather than calling them one by one.
* ``t.variables`` lists the state; ``t.statistics`` maps readable names
  (``"grad_norm"``, ``"clip_fraction"``, ...) to scalar variables, and
  ``t.get_statistics()`` returns them as Python floats for logs.
"""

from __future__ import annotations

import re

import keras
from keras import ops

from keras_trainkit.optimizers._sparse import densify, densify_all
from keras_trainkit.utils.dtypes import is_half
from keras_trainkit.utils.registry import snake_case
from keras_trainkit.utils.validation import check_condition, check_type


def check_name(name):
    """Validate a transform ``name``: ``None`` or a non-empty string without ``/``."""
    check_type("name", name, (str, type(None)))
    if name is not None:
        check_condition("name", name, bool(name) and "/" not in name, "must be a non-empty string without '/'")
    return name


def global_norm(grads):
    """The L2 norm of all gradients together (``None`` entries skipped), in float32."""
    squares = [ops.sum(ops.square(ops.cast(densify(g), "float32"))) for g in grads if g is not None]
    if not squares:
        return ops.zeros((), "float32")
    return ops.sqrt(ops.sum(ops.stack(squares)))


def scale_grads(grads, scale):
    """Multiply every gradient by the float32 ``scale`` (a scalar, or a tensor that broadcasts).

    See :func:`multiply_in_float32` for the dtype of the product.
    """
    return [None if g is None else multiply_in_float32(g, scale) for g in grads]


def multiply_in_float32(g, factor):
    """``g * factor`` in ``g``'s dtype; float16/bfloat16 gradients are multiplied in float32.

    A float16 or bfloat16 gradient times a float32 ``factor`` is computed in
    float32 and rounded once, to the nearest value of ``g``'s dtype. Rounding
    ``factor`` to float16 first would make a small factor (a clipping scale
    ``max_norm / ||g||`` below float16's smallest normal, ``6.1e-5``) a
    subnormal with a few significant bits, or zero below ``6e-8``, so the
    clipped gradient would be off by up to tens of percent, or vanish.
    """
    if is_half(g.dtype):
        return ops.cast(ops.cast(g, "float32") * factor, g.dtype)
    return g * ops.cast(factor, g.dtype)


def check_patterns(name, patterns):
    """Check ``patterns``: a regular expression or a list of them; returns a tuple."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    check_type(name, patterns, (list, tuple))
    for pattern in patterns:
        check_type(name, pattern, str)
        try:
            re.compile(pattern)
        except re.error as error:
            check_condition(name, patterns, False, f"must hold valid regular expressions ({error})")
    return tuple(patterns)


class GradientTransform:
    """Base class of gradient transforms: a stateful map ``(grads, variables) -> grads``.

    Subclasses implement ``call(grads, variables)``, create state in
    ``build(variables)`` with ``add_variable`` (after ``super().build``) and
    extend ``get_config``. State lives in ``keras.Variable`` s so it is saved,
    checkpointed and works inside ``tf.function``/XLA.

    Args:
        name: the transform's name, used as the name scope of its variables;
            defaults to the snake_case class name.

    Example:
        >>> import keras
        >>> from keras_trainkit.optimizers.transforms import ClipByGlobalNorm
        >>> clip = ClipByGlobalNorm(1.0)
        >>> w = keras.Variable([0.0, 0.0])
        >>> [g] = clip([keras.ops.convert_to_tensor([3.0, 4.0])], [w])
        >>> [round(float(x), 3) for x in g], float(clip.statistics["grad_norm"])
        ([0.6, 0.8], 5.0)

    No single paper: see each subclass.
    """

    def __init__(self, name=None):
        check_name(name)
        self.name = name or snake_case(type(self).__name__)
        self.built = False
        self._variables = []
        self._statistics = {}
        self._per_step = []

    # ------------------------------------------------------------- state
    def build(self, variables):
        """Create the state for the model ``variables`` (subclasses: call first)."""
        self.built = True

    def add_variable(self, name, shape=(), dtype="float32", initializer="zeros", statistic=False, per_step=False):
        """Create a non-trainable state variable; ``statistic=True`` lists it in ``statistics``;
        ``per_step=True`` marks a value each step writes from that step alone and no step
        reads (a statistic of the last step), left out of :attr:`carried_variables`."""
        with keras.name_scope(self.name, caller=self):
            variable = keras.Variable(
                initializer=initializer,
                shape=shape,
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=name,
            )
        self._variables.append(variable)
        if statistic:
            self._statistics[name] = variable
        if per_step:
            self._per_step.append(variable)
        return variable

    @property
    def variables(self):
        """The transform's state variables (empty before ``build``)."""
        return list(self._variables)

    @property
    def carried_variables(self):
        """The state a step reads from earlier steps (``AutoClip``'s norm history,
        ``GradientNoise``'s step): :attr:`variables` less the per-step statistics.
        A restored run that lost these would train differently."""
        return [v for v in self._variables if not any(v is p for p in self._per_step)]

    @property
    def statistics(self):
        """``{name: scalar keras.Variable}`` of readable statistics of the last step."""
        return dict(self._statistics)

    def get_statistics(self):
        """The statistics as Python floats, e.g. for a callback's ``logs``."""
        return {key: float(ops.convert_to_numpy(v)) for key, v in self._statistics.items()}

    # ------------------------------------------------------------- update
    def __call__(self, grads, variables=None):
        grads = list(grads)
        variables = None if variables is None else list(variables)
        if variables is not None and len(variables) != len(grads):
            raise ValueError(
                f"Expected one gradient per variable ({len(variables)}). Received: len(grads)={len(grads)}"
            )
        if not self.built:
            self.build(variables if variables is not None else [])
        # Sparse gradients (tf.IndexedSlices) summed per index first: see optimizers/_sparse.py.
        return self.call(densify_all(grads, variables), variables)

    def call(self, grads, variables):
        """Return the transformed gradients (subclasses implement this)."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(grads, variables).")

    # ------------------------------------------------------- serialization
    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"
