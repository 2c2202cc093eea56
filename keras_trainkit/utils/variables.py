"""What a variable is called: one rule for matching patterns and recording checkpoints."""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)


def variable_path(variable) -> str:
    """A variable's Keras path (``"dense/kernel"``), the name that patterns (layer-wise
    learning rates, clipping and centralization patterns, Muon's exclusions, the training
    monitor's layers) are matched against. A variable without a path (a ``tf.Variable``)
    gives its name without TensorFlow's output suffix (``"dense/kernel:0"`` ->
    ``"dense/kernel"``)."""
    path = getattr(variable, "path", None)
    if path:
        return str(path)
    return str(getattr(variable, "name", "")).split(":")[0]


def listed_paths(paths, shown: int = 8) -> str:
    """The first ``shown`` of ``paths`` quoted and joined for a message, ``", ..."`` after
    them when there are more."""
    paths = list(paths)
    return ", ".join(map(repr, paths[:shown])) + (", ..." if len(paths) > shown else "")


def warn_unmatched_patterns(owner: str, argument: str, patterns, variables) -> None:
    """Log a warning naming the regular expressions of ``patterns`` that ``re.search``
    finds in neither the path nor the name of any of ``variables``.

    Such a pattern excludes nothing. Keras's paths name the layers inside a
    functional sub-model (a ``keras.applications`` backbone: ``"block1_conv1/kernel"``),
    not the sub-model, and a Sequential sub-model built by a call loses its
    name from them after ``load_model``: a pattern naming the sub-model then
    silently excluded nothing.
    """
    if not patterns or variables is None:  # a transform called without its variables
        return
    variables = list(variables)
    names = [name for variable in variables for name in (variable_path(variable), str(variable.name))]
    unmatched = [pattern for pattern in patterns if not any(re.search(pattern, name) for name in names)]
    if unmatched:
        logger.warning(
            "%s: the pattern(s) %s of `%s` match none of the %d variables it was built for (paths %s), "
            "so they exclude nothing. Patterns are searched in Keras's variable paths, which name the "
            "layers inside a functional sub-model (a keras.applications backbone), not the sub-model, "
            "and lose a Sequential sub-model's name after `load_model`: name the layers.",
            owner, ", ".join(map(repr, unmatched)), argument, len(variables),
            listed_paths(variable_path(v) for v in variables))
