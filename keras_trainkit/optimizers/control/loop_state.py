"""The variables that hold a model's training state, whichever loop trains it.

A callback that undoes training (``SpikeDetection`` skipping a batch or going
back to a good state) must copy every variable the next step reads. Under
``model.fit`` those are the model's and its optimizer's. The ``Trainer`` keeps
more outside them: its own gradient transforms' state, the partial gradient
sum of its ``gradient_accumulation_steps`` and its count of skipped non-finite
steps; while it trains a model it names them here (:func:`loop_state`), the
list its checkpoints save.
"""

from __future__ import annotations

import contextlib
import weakref

from keras_trainkit import regularizers

# model -> (the function naming its state variables, the steps of one call)
_LOOP_STATES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def loop_state(model, variables, steps_per_call: int = 1):
    """While the block runs, :func:`training_state_variables` of ``model`` is ``variables()``
    and :func:`steps_per_call` is ``steps_per_call``.

    Args:
        model: the model a loop trains.
        variables: a function returning every variable of the loop's training state.
        steps_per_call: the training steps of one call of the loop's compiled step
            (its ``steps_per_execution``).
    """
    _LOOP_STATES[model] = (variables, int(steps_per_call))
    try:
        yield
    finally:
        _LOOP_STATES.pop(model, None)


def steps_per_call(model) -> int:
    """The training steps between two calls of the batch hooks: a running ``Trainer``'s
    ``steps_per_execution`` (:func:`loop_state`), else ``model.fit``'s
    (``model.steps_per_execution``), else 1."""
    if model in _LOOP_STATES:
        return _LOOP_STATES[model][1]
    return int(getattr(model, "steps_per_execution", None) or 1)


def training_state_variables(model) -> list:
    """Every variable the next training step of ``model`` reads and updates.

    The list a running ``Trainer`` named (:func:`loop_state`); otherwise the
    model's variables and its optimizer's (slots, step counter), which is all
    ``model.fit`` keeps.
    """
    if model in _LOOP_STATES:
        return list(_LOOP_STATES[model][0]())
    optimizer = getattr(model, "optimizer", None)
    return model_state_variables(model) + (list(optimizer.variables) if optimizer is not None else [])


def model_state_variables(model) -> list:
    """The model's share of its training state, in a fixed order: ``model.variables`` (the
    weights and the layers' seed-generator states), then the state its weights'
    regularizers keep between steps (``regularizers.state_variables``: ``SpectralNorm``'s
    ``u``). The start of every list of training state: checkpoints, undo copies, sweeps."""
    return list(model.variables) + regularizers.state_variables(model)
