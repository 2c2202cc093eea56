"""Argument checks that raise ``ValueError``/``TypeError`` in one message shape.

Every message says what must hold, then ``Received: name=value``, e.g.::

    ValueError: Argument `learning_rate` must be >= 0. Received: learning_rate=-1.0

Constructors call these in ``__init__`` so bad input fails before any training.
An argument that needs a package which is not installed raises
:class:`MissingPackage`, an ``ImportError`` whose message says what to install.
"""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np


_REPR_LIMIT = 120


class MissingPackage(ImportError):
    """An optional package that a feature or an argument value needs is not installed.

    The message names the package and the command that installs it; the
    ``trainkit`` console script prints it in one line, as it does a bad argument.
    """


def _received(name: str, value: Any) -> str:
    shown = repr(value)
    if len(shown) > _REPR_LIMIT:  # e.g. 10**400 or a large array
        shown = f"{shown[:_REPR_LIMIT // 2]}...{shown[-20:]} ({len(shown)} characters)"
    return f"Received: {name}={shown}"


def _fail(name: str, value: Any, requirement: str, hint: str | None = None) -> ValueError:
    message = f"Argument `{name}` {requirement}. {_received(name, value)}"
    if hint:
        message += f". {hint}"
    return ValueError(message)


def check_type(name: str, value: Any, expected: type | tuple[type, ...]) -> Any:
    """Raise ``TypeError`` unless ``value`` is an instance of ``expected``."""
    if not isinstance(value, expected):
        types = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(t.__name__ for t in types)
        raise TypeError(
            f"Argument `{name}` must be of type {names}, not "
            f"{type(value).__name__}. {_received(name, value)}"
        )
    return value


#: The largest finite float32: a float argument becomes a float32 tensor, so
#: a larger magnitude (``1e300``) would turn into ``inf`` on first use.
FLOAT32_MAX = 3.4028234663852886e38
#: The smallest normal float32. TensorFlow's CPU kernels flush smaller
#: (subnormal) values to zero, so a divisor of ``1e-45`` may become a division by 0.
FLOAT32_TINY = 1.1754943508222875e-38
#: The largest int64: integer arguments become int64 tensors or C sizes.
INT64_MAX = 2**63 - 1
#: The most iterations of a Python loop that is unrolled into every training
#: step's graph (power iterations, random projections). 1 to 20 are usual and
#: 200 serve as an exact estimate; ``10**6`` would never finish tracing.
UNROLLED_LOOP_LIMIT = 1000
#: Seeds are conceptually uint32 (as in ``np.random.seed`` and ``keras.random``).
SEED_MAX = 2**32 - 1


def _as_float32(value) -> float:
    """``value`` rounded to the nearest float32 (``inf`` beyond its range)."""
    magnitude = abs(float(value))
    if magnitude > FLOAT32_MAX:
        # Round-to-nearest overflows only at or beyond FLOAT32_MAX + half an ulp.
        if magnitude >= FLOAT32_MAX + 2.0**103:
            return math.copysign(math.inf, value)
        return math.copysign(FLOAT32_MAX, value)
    return float(struct.unpack("f", struct.pack("f", float(value)))[0])


def _check_bounds(name, value, minimum, maximum, min_inclusive, max_inclusive, hint, rounded=None):
    """Raise unless ``value`` lies within the bounds (or, given ``rounded``, its float32 rounding
    lies within theirs: the two meet as float32 tensors)."""
    tested = value if rounded is None else rounded
    for bound, inclusive, above in ((minimum, min_inclusive, True), (maximum, max_inclusive, False)):
        if bound is None:
            continue
        limit = bound if rounded is None else _as_float32(bound)
        if above:
            holds = tested >= limit if inclusive else tested > limit
            op = ">=" if inclusive else ">"
        else:
            holds = tested <= limit if inclusive else tested < limit
            op = "<=" if inclusive else "<"
        if not holds:
            where = "" if rounded is None else f" in float32 (it rounds to {rounded!r})"
            raise _fail(name, value, f"must be {op} {bound}{where}", hint)


def check_bool(name: str, value: Any) -> bool:
    """Raise ``TypeError`` unless ``value`` is a real ``bool`` (not 0/1)."""
    return check_type(name, value, bool)


def check_number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    integer: bool = False,
    hint: str | None = None,
) -> Any:
    """Check that ``value`` is a finite real number (an ``int`` if ``integer``) in range.

    Bounds are inclusive unless ``min_inclusive``/``max_inclusive`` is ``False``.
    A real number must be representable as a float32 (``|value| <=
    FLOAT32_MAX``), be 0 or at least ``FLOAT32_TINY`` in magnitude (smaller,
    subnormal values are flushed to 0 by TensorFlow's CPU kernels), and its
    float32 rounding must satisfy the bounds too (so
    ``beta=1 - 1e-12`` is refused where ``beta < 1`` must hold: it becomes
    ``1.0`` in a float32 tensor). An integer must be an ``int`` (or NumPy
    integer), not a float such as ``2.0`` or ``1e300``, and fit in an int64;
    give ``maximum`` where the integer sizes a loop or a buffer.
    Returns the value unchanged so it can be used inline.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "an integer" if integer else "a real number"
        raise TypeError(
            f"Argument `{name}` must be {kind}, not {type(value).__name__}. "
            f"{_received(name, value)}"
        )
    float32 = None
    if integer:
        if not isinstance(value, numbers.Integral):
            raise TypeError(
                f"Argument `{name}` must be an integer, not {type(value).__name__}. "
                f"{_received(name, value)}"
            )
        if abs(int(value)) > INT64_MAX:
            raise _fail(name, value, f"must fit in a 64-bit integer (|{name}| <= 2**63 - 1)", hint)
    else:
        try:
            as_float = float(value)
        except OverflowError:  # an int beyond the float64 range
            as_float = math.inf
        if not math.isfinite(as_float):
            raise _fail(name, value, "must be finite", hint)
        float32 = _as_float32(as_float)
        if not math.isfinite(float32):
            raise _fail(name, value, f"must be representable as a float32 (|{name}| <= 3.4e38)", hint)
    _check_bounds(name, value, minimum, maximum, min_inclusive, max_inclusive, hint)
    if float32 is not None:
        if 0 < abs(float32) < FLOAT32_TINY:
            raise _fail(name, value, f"must be 0 or a normal float32 (|{name}| >= 1.2e-38)", hint)
        _check_bounds(name, value, minimum, maximum, min_inclusive, max_inclusive, hint, rounded=float32)
    return value


def check_unrolled_count(name: str, value: Any, *, minimum: int = 1) -> int:
    """Check an integer that sizes a loop unrolled into each step (``minimum..UNROLLED_LOOP_LIMIT``)."""
    return int(check_number(
        name, value, minimum=minimum, maximum=UNROLLED_LOOP_LIMIT, integer=True,
        hint="Each one is unrolled into every training step's graph",
    ))


def check_seed(name: str, value: Any, *, optional: bool = True) -> int | None:
    """Accept an integer seed in ``[0, 2**32 - 1]`` (NumPy integers too, not a bool), or
    ``None`` where ``optional``; return it as ``int``."""
    if value is None and optional:
        return None
    return int(check_number(name, value, minimum=0, maximum=SEED_MAX, integer=True))


def check_positive(name: str, value: Any, *, integer: bool = False, hint: str | None = None):
    """Check ``value > 0``."""
    return check_number(name, value, minimum=0, min_inclusive=False, integer=integer, hint=hint)


def check_non_negative(name: str, value: Any, *, integer: bool = False, hint: str | None = None):
    """Check ``value >= 0``."""
    return check_number(name, value, minimum=0, integer=integer, hint=hint)


def check_probability(name: str, value: Any, *, include_one: bool = False, include_zero: bool = True):
    """Check ``value`` lies in ``[0, 1)`` (or ``[0, 1]`` with ``include_one``)."""
    return check_number(
        name,
        value,
        minimum=0.0,
        maximum=1.0,
        min_inclusive=include_zero,
        max_inclusive=include_one,
    )


def check_in(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable or incomparable value
        ok = False
    if not ok:
        listed = ", ".join(repr(c) for c in choices)
        raise _fail(name, value, f"must be one of {listed}")
    return value


def check_condition(name: str, value: Any, ok: bool, requirement: str, hint: str | None = None):
    """Raise ``ValueError`` with the standard shape when ``ok`` is false.

    ``requirement`` completes the sentence "Argument `name` ...", e.g.
    ``"must be less than `maximal_learning_rate`"``.
    """
    if not ok:
        raise _fail(name, value, requirement, hint)
    return value


def check_learning_rate(name: str, value: Any) -> Any:
    """Accept a non-negative float, a ``LearningRateSchedule`` or a callable of the step."""
    import keras

    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or callable(value):
        return value
    if isinstance(value, keras.Variable):
        return value
    return check_non_negative(name, value)


def check_shape(name: str, value: Any, *, minimum_rank: int = 0) -> tuple:
    """An example's shape (a tuple, list or ``TensorShape``) as a tuple: positive integers
    (``None`` for a length that varies), at least ``minimum_rank`` of them."""
    try:
        shape = tuple(value)
    except TypeError:  # not iterable
        shape = None
    ok = (shape is not None and not isinstance(value, str) and len(shape) >= minimum_rank
          and all(d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0)
                  for d in shape))
    at_least = f", at least {minimum_rank}" if minimum_rank else ""
    check_condition(name, value, ok, "must be a shape: a tuple of positive integers "
                    f"(None for a length that varies{at_least})")
    return tuple(d if d is None else int(d) for d in shape)


def check_model_batch(name: str, batch, model, *, minimum: int = 1, finite: bool = False):
    """``batch`` for ``model`` as NumPy arrays and its number of examples: ``(batch, n)``.

    A model with several inputs takes a list/tuple (in the order of ``model.inputs``) or a
    dict (by input name) of arrays, kept in that structure; any other batch is one array
    (a list of examples included). Every array must hold the same number ``n >= minimum``
    of examples along its first axis, and with ``finite`` only finite values.
    """
    several = len(getattr(model, "inputs", None) or ()) > 1
    if isinstance(batch, dict) or (several and isinstance(batch, (list, tuple))):
        arrays = {k: np.asarray(v) for k, v in batch.items()} if isinstance(batch, dict) \
            else type(batch)(np.asarray(v) for v in batch)
        leaves = list(arrays.values()) if isinstance(arrays, dict) else list(arrays)
    else:
        arrays = np.asarray(batch)
        leaves = [arrays]
    sizes = sorted({leaf.shape[0] if leaf.ndim else 0 for leaf in leaves}) or [0]
    if len(sizes) > 1:
        raise ValueError(f"Argument `{name}` must hold the same number of examples for every input. "
                         f"Received: {name} with {', '.join(map(str, sizes))} examples")
    if sizes[0] < minimum:
        shapes = ", ".join(str(leaf.shape) for leaf in leaves) or "none"
        raise ValueError(f"Argument `{name}` must hold at least {minimum} example(s). "
                         f"Received: {name} with shape(s) {shapes}")
    if finite and not all(np.all(np.isfinite(leaf)) for leaf in leaves):
        raise ValueError(f"Argument `{name}` must be finite. Received: {name} with non-finite values")
    return arrays, sizes[0]


def compiled_loss_reads_targets(model) -> bool:
    """Whether a training step of ``model`` needs targets ``y``: it has a compiled loss and
    Keras's own ``compute_loss`` applies it. A model trained by ``add_loss`` alone, or whose
    class overrides ``compute_loss``, may train on inputs alone."""
    import keras

    return (getattr(model, "loss", None) is not None
            and type(model).compute_loss is keras.Model.compute_loss)
