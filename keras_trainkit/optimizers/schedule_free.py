"""Schedule-Free learning around any Keras optimizer (Defazio et al. 2024)."""

from __future__ import annotations

import logging

import keras
from keras import ops

from keras_trainkit._compat.keras import add_slot_variables, optimizer_trained_variables, variable_has_value
from keras_trainkit.optimizers._conditional import run_where, value_of
from keras_trainkit.optimizers._registry import register
from keras_trainkit.optimizers.control import leaf_optimizers
from keras_trainkit.optimizers.wrapper import OptimizerWrapper
from keras_trainkit.utils import validation as v

logger = logging.getLogger(__name__)

# Hyperparameters that turn on a momentum (a first-moment average) in an optimizer, by
# class name; every other class is checked for the usual names.
_MOMENTUM_ARGUMENTS = {"Adan": ("beta_1", "beta_2")}
_USUAL_MOMENTUM_ARGUMENTS = ("momentum", "beta_1", "adam_beta_1")
# Keras's ScheduleFreeAdamW where this Keras has it (else a class nothing is an instance of).
_KERAS_SCHEDULE_FREE = getattr(keras.optimizers, "ScheduleFreeAdamW", type("NoScheduleFreeAdamW", (), {}))


def _hyperparameter_value(value):
    """A float from a number, a scalar variable or a zero-argument callable (else ``None``)."""
    if callable(value) and not isinstance(value, keras.Variable):
        value = value()
    try:
        return float(ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return None


def check_momentum_off(optimizer):
    """Raise ``ValueError`` naming the argument to change if a leaf of ``optimizer`` has momentum on."""
    for leaf in leaf_optimizers(optimizer):
        if isinstance(leaf, _KERAS_SCHEDULE_FREE):
            raise ValueError(
                "Argument `optimizer` must not be schedule-free already: use "
                "keras.optimizers.ScheduleFreeAdamW alone, or ScheduleFree(keras.optimizers.AdamW("
                f"beta_1=0.0)). Received: optimizer={optimizer!r}"
            )
        if isinstance(leaf, keras.optimizers.Lion):
            raise ValueError(
                "Argument `optimizer` must be able to run without momentum, and Keras's Lion cannot "
                "(it refuses beta_1=0). Use SGD, or Adam/AdamW/RAdam with beta_1=0. "
                f"Received: optimizer={optimizer!r}"
            )
        if leaf.use_ema or leaf.gradient_accumulation_steps:
            argument = "use_ema" if leaf.use_ema else "gradient_accumulation_steps"
            raise ValueError(
                f"Argument `optimizer` must not set `{argument}`: Schedule-Free averages the weights "
                "itself, and an inner update that happens only every k calls would be averaged on "
                "every call (accumulate with the Trainer's gradient_accumulation_steps instead). "
                f"Received: optimizer.{argument}={getattr(leaf, argument)!r}"
            )
        names = _MOMENTUM_ARGUMENTS.get(type(leaf).__name__, _USUAL_MOMENTUM_ARGUMENTS)
        values = {name: _hyperparameter_value(getattr(leaf, name)) for name in names if hasattr(leaf, name)}
        on = {name: value for name, value in values.items() if value not in (None, 0.0)}
        if on:
            raise ValueError(
                "Argument `optimizer` must have its momentum off: Schedule-Free's interpolation and "
                f"averaging replace it. Set {', '.join(f'`{name}=0`' for name in on)} on "
                f"{type(leaf).__name__}. Received: "
                + ", ".join(f"optimizer.{name}={value!r}" for name, value in on.items())
            )


def _exchange(variable, slot):
    """Swap the values of ``variable`` and ``slot`` (same shape and dtype), exactly."""
    held = ops.copy(ops.convert_to_tensor(variable))
    variable.assign(slot)
    slot.assign(held)


@register
class ScheduleFree(OptimizerWrapper):
    """Schedule-Free learning: a momentum-free optimizer plus interpolation and averaging.

    The inner optimizer (its momentum off) drives the base sequence ``z``; the
    wrapper keeps the average ``x`` of the ``z`` s and trains the model at an
    interpolation ``y`` of the two. With ``lr_t`` the inner optimizer's learning
    rate at update ``t`` (its schedule and warm-up included), ``beta = beta_1``
    and ``p = weight_lr_power``, each update is::

        g_t     = gradient at y_t                      (the model's weights hold y)
        z_{t+1} = z_t + inner_update(g_t)              (the inner step, computed at y_t)
        m_t     = max(lr_1, ..., lr_t);  w_t = m_t ** p;  c_t = w_t / (w_1 + ... + w_t)
        x_{t+1} = (1 - c_t) x_t + c_t z_{t+1}
        y_{t+1} = beta x_{t+1} + (1 - beta) z_{t+1}

    with ``x_1 = y_1 = z_1`` the weights at the first update. ``c_t = 0``
    while every ``w`` is 0 (a warm-up from 0). State: ``z`` and ``x`` (two
    copies of the weights, like Adam's two slots; the authors' reference
    implementation keeps both too). optax keeps only ``z`` and recovers
    ``x = (y - (1 - beta) z) / beta``; keeping ``x`` avoids that division,
    and a swap of ``x`` into the model is an exchange: the ``x`` slot keeps
    ``y`` meanwhile, so swapping back (after ``load_model`` too) restores
    ``y`` bit for bit, under XLA too.

    Evaluation weights: :meth:`evaluation_weights` returns ``x``. At the end of
    ``fit`` (``finalize_variable_values``, the hook Keras's ``use_ema`` uses)
    ``x`` is swapped into the model, so ``evaluate``, ``predict`` and
    ``model.save`` after ``fit`` use ``x``; the optimizer records that
    (``holds_evaluation_weights``, saved with its state, next to ``z`` and
    the kept ``y``), and ``y`` goes back into the model before training goes
    on (after ``load_model`` too), bit for bit the ``y`` of an uninterrupted
    run. Who puts it back: the callback ``keras_trainkit.callbacks.SwapEvaluationWeights``
    at ``on_train_begin`` and the ``Trainer`` before its first step, so
    training resumes exactly; without them, this optimizer's next update does,
    after that update's gradient was taken at ``x`` (Keras gives an optimizer
    no hook before the first step of ``fit``, nor around validation: a
    ``model.fit`` without the callback ends with a warning, once). The callback also validates
    at ``x`` during ``model.fit`` and recomputes BatchNorm statistics at
    ``x``, as the authors advise; the ``Trainer`` does both itself.

    Conventions (pinned in tests/optimizers/test_schedule_free.py against
    ``optax.contrib.schedule_free``):

    * ``lr_t`` is the learning rate the inner optimizer uses for that update
      (its schedule at ``iterations``, from 0), as in the authors' reference
      code; optax evaluates the schedule for ``c_t`` one step later
      (``schedule(t)`` with its count from 1). With a constant learning rate
      the two agree.
    * The inner optimizer computes its step at ``y`` (its weight decay and any
      weight-dependent term use ``y``), as optax passes ``params = y`` to the
      base optimizer and the reference AdamW decays at ``y``; the step is added
      to ``z``.
    * ``x``, ``y`` and ``z`` are combined in float32 and stored in the
      variable's dtype; optax combines them in the parameters' dtype, and
      recovers ``x`` from ``y`` and ``z`` (equal up to rounding).
    * A step the inner optimizer does not take (its ``iterations`` does not
      move) leaves ``z``, ``x`` and the averaging weights unchanged.

    Args:
        optimizer: the inner optimizer, momentum off: ``SGD(momentum=0)``,
            ``Adam``/``AdamW``/``Lamb``/``RAdam`` ... with ``beta_1=0`` (an
            instance, a name or a config dict). ``use_ema`` and
            ``gradient_accumulation_steps`` on it are refused, and so is
            Keras's ``Lion`` (it refuses ``beta_1=0``).
        beta_1: the interpolation ``beta`` in ``(0, 1]``. Defaults to ``0.9``.
        weight_lr_power: ``p >= 0``, the power of the learning rate in the
            averaging weights. Defaults to ``2.0``.
        loss_scale_factor: optional static loss scale (see ``OptimizerWrapper``).
        name: the optimizer's name.

    Example:
        >>> import keras, numpy as np
        >>> from keras_trainkit.optimizers import ScheduleFree
        >>> from keras_trainkit.schedules import Warmup
        >>> inner = keras.optimizers.AdamW(Warmup(2e-3, warmup_steps=10), beta_1=0.0)
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer=ScheduleFree(inner), loss="mse")
        >>> _ = model.fit(np.ones((16, 4)), np.zeros((16, 1)), epochs=2, verbose=0)
        >>> model.optimizer.holds_evaluation_weights  # the model now holds x
        True

    Reference:
        Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less
        Scheduled", NeurIPS 2024, https://arxiv.org/abs/2405.15682.
    """

    #: Each step sets the weights to ``y = beta x + (1 - beta) z`` from its own state: wrappers
    #: rewriting the change of the weights (``LayerwiseLearningRate``, ``Cautious``) refuse to
    #: wrap this one (``wrapper.check_no_weight_reset_inside``); put them inside it.
    resets_weights = True

    def __init__(self, optimizer, beta_1=0.9, weight_lr_power=2.0, loss_scale_factor=None, name=None, **kwargs):
        v.check_number("beta_1", beta_1, minimum=0.0, maximum=1.0, min_inclusive=False)
        v.check_non_negative("weight_lr_power", weight_lr_power)
        super().__init__(optimizer, loss_scale_factor=loss_scale_factor, name=name, **kwargs)
        check_momentum_off(self.inner_optimizer)
        self.beta_1 = float(beta_1)
        self.weight_lr_power = float(weight_lr_power)
        self._swaps_expected = False
        self._warned_unswapped = False

    # ------------------------------------------------------------------ state
    def build(self, variables):
        if self.built:
            return
        variables = list(variables)
        super().build(variables)
        self._z, self._x = add_slot_variables(self, variables, ["schedule_free_z", "schedule_free_x"])
        scalar = {"shape": (), "initializer": "zeros", "aggregation": "none"}
        self._max_learning_rate = self.add_variable(dtype="float32", name="max_learning_rate", **scalar)
        self._weight_sum = self.add_variable(dtype="float32", name="weight_sum", **scalar)
        self._steps = self.add_variable(dtype="int64", name="schedule_free_steps", **scalar)
        self._holds_x = self.add_variable(dtype="int64", name="holds_evaluation_weights", **scalar)

    def _slots(self, variables):
        """``(z, x)`` slot pairs for ``variables``."""
        return [(self._z[i], self._x[i]) for i in map(self._get_variable_index, variables)]

    def _variables_or_built(self, variables):
        if variables is not None:
            return list(variables)
        if not self.built:
            raise ValueError(
                "ScheduleFree has no weights yet: build it (optimizer.build(variables)) or train "
                "first, or pass the variables. Received: variables=None"
            )
        return optimizer_trained_variables(self)

    # ------------------------------------------------------------- the update
    def _interpolation(self, z, x):
        """``y = beta x + (1 - beta) z`` in float32."""
        return self.beta_1 * ops.cast(x, "float32") + (1.0 - self.beta_1) * ops.cast(z, "float32")

    def wrapped_apply(self, grads, variables):
        """Put ``y`` back if the model holds ``x``, start ``z, x`` at the first update, step, average.

        The conditional parts go through :func:`run_where` (``ops.cond`` on
        TensorFlow and PyTorch; a ``lax.cond`` on the variables' values on JAX,
        where a ``cond`` branch cannot assign variables).
        """
        slots = self._slots(variables)
        slot_variables = [slot for pair in slots for slot in pair]
        run_where(
            ops.greater(value_of(self._holds_x), 0),
            lambda: self._put_back_y(variables, slots),
            list(variables) + slot_variables + [self._holds_x],
        )

        def start():
            for (z, x), w in zip(slots, variables):
                z.assign(w)
                x.assign(w)

        run_where(ops.equal(value_of(self._steps), 0), start, slot_variables)
        learning_rate = ops.cast(self.inner_optimizer.learning_rate, "float32")
        iterations = ops.copy(value_of(self.iterations))
        y_before = [ops.copy(ops.cast(value_of(w), "float32")) for w in variables]
        self.apply_inner(grads, variables)
        stepped = ops.not_equal(value_of(self.iterations), iterations)
        run_where(
            stepped,
            lambda: self._average(variables, slots, y_before, learning_rate),
            list(variables) + slot_variables + [self._max_learning_rate, self._weight_sum, self._steps],
        )

    def _average(self, variables, slots, y_before, learning_rate):
        """After an inner step: ``z`` takes the step, ``x`` averages ``z``, the model gets ``y``."""
        max_lr = ops.maximum(value_of(self._max_learning_rate), learning_rate)
        weight = ops.power(max_lr, self.weight_lr_power)
        total = value_of(self._weight_sum) + weight
        c = ops.where(ops.greater(total, 0.0), weight / ops.where(ops.greater(total, 0.0), total, 1.0), 0.0)
        for w, (z, x), y in zip(variables, slots, y_before):
            z.assign(ops.cast(ops.cast(z, "float32") + (ops.cast(w, "float32") - y), z.dtype))
            x.assign(ops.cast((1.0 - c) * ops.cast(x, "float32") + c * ops.cast(z, "float32"), x.dtype))
            w.assign(ops.cast(self._interpolation(z, x), w.dtype))
        self._max_learning_rate.assign(max_lr)
        self._weight_sum.assign(total)
        self._steps.assign(value_of(self._steps) + 1)

    def _put_back_y(self, variables, slots):
        """Exchange the model's ``x`` and the ``y`` kept in the ``x`` slot (in-graph; clears the flag)."""
        for w, (_, x) in zip(variables, slots):
            _exchange(w, x)
        self._holds_x.assign(0)

    # ------------------------------------------------------- evaluation weights
    #: ``finalize_variable_values`` leaves ``x`` in the model; the next update puts ``y`` back.
    swaps_at_end_of_fit = True

    @property
    def holds_evaluation_weights(self) -> bool:
        """Whether the model's weights hold ``x`` now (after ``fit`` or a swap), not ``y``."""
        return self._readable() and int(ops.convert_to_numpy(self._holds_x)) > 0

    def _has_stepped(self) -> bool:
        return self._readable() and int(ops.convert_to_numpy(self._steps)) > 0

    def _readable(self) -> bool:
        """Built, and the state readable (not while a failed JAX ``fit`` still holds the values)."""
        return self.built and variable_has_value(self._steps) and variable_has_value(self._holds_x)

    def evaluation_weights(self, variables=None):
        """The averaged weights ``x`` for ``variables`` (default: all it trains), as tensors.

        What ``optax.contrib.schedule_free_eval_params`` returns. Before the
        first update ``x`` is the weights themselves. Works eagerly and inside
        a compiled function.
        """
        variables = self._variables_or_built(variables)
        if not self.built:
            return [ops.copy(ops.convert_to_tensor(w)) for w in variables]
        from_slot = ops.logical_and(ops.greater(self._steps, 0), ops.equal(self._holds_x, 0))
        return [ops.where(from_slot, ops.convert_to_tensor(x), ops.convert_to_tensor(w))
                for w, (_, x) in zip(variables, self._slots(variables))]

    def training_weights(self, variables=None):
        """The weights ``y`` at which the next gradient is taken, as tensors."""
        variables = self._variables_or_built(variables)
        if not self.built:
            return [ops.copy(ops.convert_to_tensor(w)) for w in variables]
        holds_x = ops.greater(self._holds_x, 0)
        return [ops.where(holds_x, ops.convert_to_tensor(x), ops.convert_to_tensor(w))
                for w, (_, x) in zip(variables, self._slots(variables))]

    def swap_to_evaluation_weights(self, variables=None) -> bool:
        """Put ``x`` into the model and keep ``y`` in its place (eagerly); returns whether anything changed.

        Nothing changes before the first update (``x`` is the weights) or when
        the model holds ``x`` already.
        """
        if not self._has_stepped() or self.holds_evaluation_weights:
            return False
        variables = self._variables_or_built(variables)
        for w, (_, x) in zip(variables, self._slots(variables)):
            _exchange(w, x)
        self._holds_x.assign(1)
        return True

    def swap_to_training_weights(self, variables=None, weights=None) -> bool:
        """Put ``y`` back into the model, bit for bit (eagerly); returns whether anything changed.

        ``weights``: values to put in instead of the kept ``y`` (the protocol's
        snapshot; equal to it after :meth:`swap_to_evaluation_weights`).
        """
        if not self.holds_evaluation_weights:
            return False
        variables = self._variables_or_built(variables)
        slots = self._slots(variables)
        for i, (w, (_, x)) in enumerate(zip(variables, slots)):
            _exchange(w, x)
            if weights is not None:
                w.assign(weights[i])
        self._holds_x.assign(0)
        return True

    def expect_evaluation_swaps(self):
        """Called at the start of ``fit`` by whoever evaluates at ``x`` (``SwapEvaluationWeights``,
        the ``Trainer``); a ``fit`` without one ends with a warning (once per optimizer)."""
        self._swaps_expected = True

    def finalize_variable_values(self, var_list):
        """End of ``fit``: the model gets the evaluation weights ``x`` (see the class docstring)."""
        super().finalize_variable_values(var_list)
        self.swap_to_evaluation_weights(var_list)
        if not self._swaps_expected and not self._warned_unswapped:
            self._warned_unswapped = True
            logger.warning(
                "ScheduleFree: the model holds the average x now. This fit had no "
                "keras_trainkit.callbacks.SwapEvaluationWeights, so any validation in it ran at the "
                "training weights y, not at x, and BatchNorm statistics (if any) were not recomputed at x. "
                "Pass callbacks=[keras_trainkit.callbacks.SwapEvaluationWeights(bn_data=x_train)] to "
                "model.fit (the Trainer does it by itself).")
        self._swaps_expected = False

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "weight_lr_power": self.weight_lr_power})
        return config
