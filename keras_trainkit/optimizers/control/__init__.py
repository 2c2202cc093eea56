"""Acting on a compiled optimizer from outside: the one home for it.

Callbacks, diagnostics, the tuners and the Trainer change optimizers they did
not build: they lower a learning rate on a plateau, schedule a momentum, sweep
the learning rate, anneal it for SWA, or put gradient transforms in front of a
compiled optimizer. Everything they need is here, so nothing else reads an
optimizer's private attributes or walks its wrappers:

* **The wrapper chain.** An optimizer may wrap others: Keras's
  ``LossScaleOptimizer`` and keras_trainkit's ``OptimizerWrapper`` hold one in
  ``inner_optimizer``; Keras's ``MultiOptimizer`` holds several in
  ``optimizers``. The learning rate and the hyperparameters live on the
  innermost ("leaf") optimizers: :func:`leaf_optimizers`,
  :func:`model_leaf_optimizers`, :func:`wrapper_chain`, :func:`find_optimizer`.
* **The learning rate**: :class:`LearningRateHandle` reads it, scales it (a
  float is multiplied, a schedule is wrapped in a ``ScaledSchedule`` so it
  keeps its shape), sets it, and overrides it for a while (in a schedule's
  place, a :class:`HeldLearningRate`, saved as the schedule it stands in for).
* **Any float hyperparameter** (``beta_1``, ``momentum``, ``weight_decay``,
  ...): :func:`schedule_hyperparameter` makes it a variable that a compiled
  step reads at run time.
* **Gradient transforms** on a compiled model: :func:`attach_transforms` and
  :func:`detach_transforms`.
* **Retracing**: :func:`retrace` makes ``model.fit`` and the Trainer trace
  their step again after a change that a traced step would not see;
  :func:`assigned_outside_state` after assigning a variable that Keras's JAX
  trainer does not carry through its jitted step (it froze the value).
* **The training state**: :func:`training_state_variables`, every variable the
  next step reads, also the Trainer's own (:func:`loop_state`); its model's share,
  :func:`model_state_variables`; and the one piece kept outside variables that a
  checkpoint saves beside them, the schedules' scales (:func:`learning_rate_scales`,
  :func:`restore_learning_rate_scales`).

What a compiled step sees (``model.fit`` traces ``train_step`` lazily, on the
first batch, after ``on_train_begin``): a Python float read by ``update_step``
is frozen into the trace, a ``keras.Variable`` is read at run time. So every
change here that replaces an object (a float by a variable, a schedule by a
scaled one, an optimizer by a wrapper) is made before tracing or followed by
:func:`retrace`.
"""

from keras_trainkit.optimizers.control.attachment import (
    applied_steps,
    attach_transforms,
    detach_transforms,
    warn_if_unused,
)
from keras_trainkit.optimizers.control.chain_walk import (
    assigned_outside_state,
    build_optimizer,
    find_optimizer,
    leaf_optimizers,
    model_leaf_optimizers,
    retrace,
    retrace_requests,
    step_freezes_assigned_values,
    update_count,
    wrapper_chain,
)
from keras_trainkit.optimizers.control.hyperparameters import (
    HyperparameterVariable,
    schedule_hyperparameter,
)
from keras_trainkit.optimizers.control.learning_rate import (
    HeldLearningRate,
    LearningRateHandle,
    learning_rate_handles,
    learning_rate_scales,
    restore_learning_rate_scales,
)
from keras_trainkit.optimizers.control.loop_state import (
    loop_state,
    model_state_variables,
    steps_per_call,
    training_state_variables,
)

__all__ = [
    "HeldLearningRate",
    "HyperparameterVariable",
    "LearningRateHandle",
    "applied_steps",
    "assigned_outside_state",
    "attach_transforms",
    "build_optimizer",
    "detach_transforms",
    "find_optimizer",
    "leaf_optimizers",
    "learning_rate_handles",
    "learning_rate_scales",
    "loop_state",
    "model_leaf_optimizers",
    "model_state_variables",
    "restore_learning_rate_scales",
    "retrace",
    "retrace_requests",
    "schedule_hyperparameter",
    "step_freezes_assigned_values",
    "steps_per_call",
    "training_state_variables",
    "update_count",
    "warn_if_unused",
    "wrapper_chain",
]
