"""``HyperparameterScheduler``: set any optimizer hyperparameter from a schedule.

Why a variable is needed: Keras 3 optimizers keep most hyperparameters as plain
Python floats (``Adam.beta_1``, ``SGD.momentum``, ``weight_decay``, ...) and read
them inside ``update_step``. ``model.fit`` traces that code once into a
``tf.function``, so a float is frozen into the graph as a constant: assigning
``optimizer.beta_1 = 0.85`` after the first step changes the attribute but not
the update. This callback therefore replaces the float by a
``HyperparameterVariable`` (a ``keras.Variable``, through
``keras_trainkit.optimizers.control.schedule_hyperparameter``) before the
train function is traced (or forces a retrace once, if it already was), then
assigns the scheduled value to that variable every step or epoch, which a
traced or XLA-compiled step reads at run time.
"""

from __future__ import annotations

import math

import keras

from keras_trainkit.callbacks._monitor import sync_model_state
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control
from keras_trainkit.optimizers.control import HyperparameterVariable
from keras_trainkit.utils.values import to_float
from keras_trainkit.utils.validation import check_in, check_type

FREQUENCIES = ("step", "epoch")

# Keras optimizers whose momentum's side of 0 picks code when they are built and traced:
# ``SGD`` keeps momentum slots only if built with ``momentum != 0`` (``RMSprop``: ``> 0``)
# and its traced update takes the plain path when the momentum read then was 0.
# (class, slot attribute, whether a value uses the momentum path)
_MOMENTUM_GATES = (
    (keras.optimizers.SGD, "momentums", lambda value: value != 0),
    (keras.optimizers.RMSprop, "_momentums", lambda value: value > 0),
)


def _momentum_gate(leaf, hyperparameter):
    """``(slot attribute, test)`` when ``leaf``'s ``hyperparameter`` is a gated momentum, else ``None``."""
    if hyperparameter != "momentum":
        return None
    for cls, slots, uses_momentum in _MOMENTUM_GATES:
        if isinstance(leaf, cls):
            return slots, uses_momentum
    return None


@register
class HyperparameterScheduler(keras.callbacks.Callback):
    """Set an optimizer hyperparameter from a schedule every step or every epoch.

    Formula: before step ``t`` (``frequency="step"``) or epoch ``e``
    (``frequency="epoch"``) the hyperparameter ``h`` becomes

        h = schedule(t)   or   h = schedule(e)

    where ``t`` counts optimizer updates (``optimizer.iterations``, which Keras
    divides by ``gradient_accumulation_steps``), not micro-batches, and ``e`` is
    the 0-based epoch index passed by ``fit``.

    Any float hyperparameter of a Keras or keras_trainkit optimizer works
    (``momentum``, ``beta_1``, ``beta_2``, ``weight_decay``, ``epsilon``,
    ``rho``...), and ``learning_rate`` when the optimizer was built with a float
    learning rate. The float attribute is replaced by a
    :class:`HyperparameterVariable` before the train function is traced, so the
    new values take effect inside a compiled ``model.fit`` step (a plain
    attribute assignment would not: the float is a trace-time constant). The
    attribute keeps its name; ``optimizer.get_config()`` reports its current
    value as a float, so ``model.save`` still works. ``weight_decay=None``
    starts at 0 and is then decayed like any other value. For a wrapper
    (``inner_optimizer``) or a per-layer set (``MultiOptimizer``) every inner
    optimizer is scheduled. The value is logged in the epoch logs under the
    hyperparameter's name.

    On JAX with ``jit_compile`` (Keras's default there), the jitted step reads
    such a variable once, when it is traced (Keras's JAX trainer carries only
    the model's, optimizer's and metrics' variables): a new value per epoch
    retraces the step (``control.assigned_outside_state``); a new value per
    step would compile every step, so ``frequency="step"`` is refused there
    for any hyperparameter but a float ``learning_rate`` (compile with
    ``jit_compile=False``, or schedule per epoch).

    Args:
        hyperparameter: the optimizer attribute to set, e.g. ``"momentum"``.
        schedule: a ``keras.optimizers.schedules.LearningRateSchedule`` or any
            callable of the step (or epoch) returning a number.
        frequency: ``"step"`` (default) or ``"epoch"``. Per step needs
            ``steps_per_execution=1`` (the batch hooks run once per call of the
            step, so the others would keep the call's first value; refused).
        verbose: 0 is quiet; 1 prints the value at each epoch start.

    Example:
        >>> import keras
        >>> from keras_trainkit.callbacks import HyperparameterScheduler
        >>> momentum = keras.optimizers.schedules.PolynomialDecay(
        ...     0.95, decay_steps=100, end_learning_rate=0.85)
        >>> callback = HyperparameterScheduler("beta_1", momentum)
        >>> callback.frequency
        'step'

    Reference: Smith, "A disciplined approach to neural network
    hyper-parameters: Part 1" (2018), arXiv:1803.09820, which cycles momentum
    inversely to the learning rate in the one-cycle policy.
    """

    def __init__(self, hyperparameter, schedule, frequency="step", verbose=0):
        super().__init__()
        check_type("hyperparameter", hyperparameter, str)
        if not hyperparameter or not hyperparameter.isidentifier():
            raise ValueError(
                "Argument `hyperparameter` must be an attribute name such as 'momentum'. "
                f"Received: hyperparameter={hyperparameter!r}"
            )
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not callable(schedule):
            raise TypeError(
                "Argument `schedule` must be a LearningRateSchedule or a callable of the "
                f"step, not {type(schedule).__name__}. Received: schedule={schedule!r}"
            )
        check_in("frequency", frequency, FREQUENCIES)
        check_in("verbose", verbose, (0, 1))
        self.hyperparameter = hyperparameter
        self.schedule = schedule
        self.frequency = frequency
        self.verbose = verbose
        self._targets = []

    # -- wiring ---------------------------------------------------------------

    def _resolve_targets(self):
        optimizer = getattr(self.model, "optimizer", None)
        leaves = control.model_leaf_optimizers(self.model)
        if not leaves:
            raise ValueError(
                "HyperparameterScheduler needs a compiled model with an optimizer. "
                f"Received: model.optimizer={optimizer!r}"
            )
        targets = []
        retrace = False
        for leaf in leaves:
            if self.hyperparameter == "learning_rate":
                handle = control.LearningRateHandle(leaf)
                if handle.is_schedule:
                    raise ValueError(
                        f"{type(leaf).__name__} uses a learning-rate schedule "
                        f"({type(handle.raw).__name__}); HyperparameterScheduler can only "
                        "set a float learning rate. Pass the schedule to the optimizer "
                        f"instead. Received: hyperparameter={self.hyperparameter!r}"
                    )
                targets.append((leaf, handle.variable))
                continue
            self._check_momentum_slots(leaf)
            already = isinstance(getattr(leaf, self.hyperparameter, None), HyperparameterVariable)
            targets.append((leaf, control.schedule_hyperparameter(leaf, self.hyperparameter)))
            retrace = retrace or not already
        if retrace:
            control.retrace(self.model)
        return targets

    def _check_momentum_slots(self, leaf) -> None:
        """Refuse an ``SGD``/``RMSprop`` built with momentum 0: it has no momentum slots, so its
        update would ignore every scheduled momentum (silently training without momentum)."""
        gate = _momentum_gate(leaf, self.hyperparameter)
        if gate is None:
            return
        control.build_optimizer(self.model)
        slots, uses_momentum = gate
        if leaf.built and not getattr(leaf, slots, None) and self.model.trainable_variables:
            raise ValueError(
                f"HyperparameterScheduler cannot schedule the momentum of {type(leaf).__name__} "
                f"built with momentum={float(getattr(leaf, 'momentum')):g}: it keeps no momentum "
                "slots, so its update would ignore every scheduled value. Compile the optimizer with "
                f"a momentum > 0 (the schedule may still hold it at 0 for a while). "
                f"Received: hyperparameter={self.hyperparameter!r}")

    def _momentum_path_value(self, leaf, value):
        """``value``, but a momentum of 0 for ``SGD``/``RMSprop`` as the smallest positive double.

        Their update checks ``momentum != 0`` (``> 0``) when it is traced and then takes the plain
        path, which leaves the momentum slots alone: a step traced at 0 would ignore every later
        momentum, and one traced before would restart from stale slots. ``5e-324`` is 0.0 exactly
        in the float32 variable the step reads, and on the momentum side of that check, so the
        traced update keeps updating its slots (``m = 0 * m - lr * g``: the plain update)."""
        gate = _momentum_gate(leaf, self.hyperparameter)
        if gate is not None and value == 0:
            return math.ulp(0.0)
        return value

    def _value(self, count) -> float:
        return to_float(self.schedule(count))

    def _apply(self, count_of) -> None:
        # JAX: mid-fit the trainer holds the variables' values; put them back so the update
        # count can be read and the new value assigned (the next batch reads them back).
        sync_model_state(self.model)
        frozen_changed = False
        for leaf, variable in self._targets:
            value = self._value(count_of(leaf))
            if isinstance(variable, HyperparameterVariable):
                value = self._momentum_path_value(leaf, value)
                frozen_changed = frozen_changed or float(variable) != float(value)
                variable.set_value(value)
            else:
                variable.assign(value)
        if frozen_changed:
            control.assigned_outside_state(self.model)  # JAX froze the old value into its step

    # -- callback hooks -------------------------------------------------------

    def on_train_begin(self, logs=None):
        steps = control.steps_per_call(self.model)
        if self.frequency == "step" and steps > 1:
            raise ValueError(
                f"HyperparameterScheduler sets {self.hyperparameter} before each call of the "
                f"training step, and with steps_per_execution={steps} a call runs {steps} steps: "
                "all but the first would keep the value of the call's first step. Use "
                "steps_per_execution=1, schedule per epoch (frequency='epoch'), or, for the "
                "learning rate, give the optimizer the schedule itself (its step runs in the "
                f"compiled loop). Received: frequency={self.frequency!r}")
        self._targets = self._resolve_targets()
        frozen = [v for _, v in self._targets if isinstance(v, HyperparameterVariable)]
        if frozen and self.frequency == "step" and control.step_freezes_assigned_values(self.model):
            raise ValueError(
                f"HyperparameterScheduler cannot set {self.hyperparameter} at every step of a "
                "jit-compiled step on JAX: Keras's JAX trainer reads it once, when it traces the "
                "step, so each new value would need a new compilation. Compile the model with "
                "jit_compile=False, or schedule per epoch (frequency='epoch'). "
                f"Received: frequency={self.frequency!r}"
            )

    def on_epoch_begin(self, epoch, logs=None):
        if self.frequency == "epoch":
            self._apply(lambda leaf: epoch)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: HyperparameterScheduler setting "
                  f"{self.hyperparameter} to {self.current_values()}.")

    def on_train_batch_begin(self, batch, logs=None):
        if self.frequency == "step":
            self._apply(control.update_count)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._targets:
            values = self.current_values()
            logs[self.hyperparameter] = values[0] if len(values) == 1 else values

    def current_values(self) -> list[float]:
        """The hyperparameter's current value on each scheduled optimizer."""
        return [to_float(variable) for _, variable in self._targets]

    # -- serialization --------------------------------------------------------

    def get_config(self):
        """The constructor arguments; the schedule is serialized with Keras."""
        return {
            "hyperparameter": self.hyperparameter,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "frequency": self.frequency,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuild from :meth:`get_config`."""
        return cls(**config)

    def __deepcopy__(self, memo):
        # A copy is a fresh, unbound callback with the same arguments.
        import copy

        copied = type(self)(
            self.hyperparameter, copy.deepcopy(self.schedule, memo), self.frequency, self.verbose
        )
        memo[id(self)] = copied
        return copied
