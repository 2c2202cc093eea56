"""Building the Trainer's compiled functions: jit, steps per execution, the XLA barrier.

A compiled function takes a dataset iterator and a step ``limit`` and runs up
to ``limit`` steps in one call: ``steps_per_execution=1`` is one conditional
step; more is an in-graph ``tf.while_loop``. Under XLA (``jit_compile=True``)
each step is an XLA-compiled ``tf.function`` inside that loop.
"""

from __future__ import annotations

import tensorflow as tf

from keras_trainkit._compat.tensorflow import bind_traced_call, xla_optimization_barrier
from keras_trainkit.optimizers import control


def resolve_jit(jit_compile, model, strategy, run_eagerly) -> bool:
    """Whether to compile with XLA: ``jit_compile`` itself, or ``"auto"`` as ``fit`` decides.

    ``"auto"``: XLA on an accelerator (a GPU/TPU is present) when the model
    supports it, never on CPU alone (where compiling takes seconds that short
    runs never win back) and never under a distribution strategy.
    """
    if run_eagerly:
        return False
    if jit_compile != "auto":
        return bool(jit_compile)
    if strategy.num_replicas_in_sync > 1 or tf.distribute.has_strategy():
        return False
    if not any(d.device_type != "CPU" for d in tf.config.list_physical_devices()):
        return False
    from keras_trainkit._compat.keras import model_supports_jit

    return model_supports_jit(model)


def pin_gradients(finite, grads):
    """Pass ``finite`` and ``grads`` through one XLA optimization barrier (XLA steps only).

    Without it TensorFlow's graph optimizer (Grappler's control-flow sinking,
    ``tfg-cf-sink``) moves ops used only inside the update's ``tf.cond``, such
    as the weight-gradient convolutions, into that conditional, where XLA:CPU
    compiles them as naive loops: the 1-D CNN's step ran 4-8x slower than
    ``fit``'s. The barrier's ``finite`` output feeds the ``tf.cond`` predicate,
    outside the branches, so the gradients stay in the main computation.
    """
    present = [g for g in grads if g is not None]
    pinned = xla_optimization_barrier(finite, *present)
    finite, rest = pinned[0], list(pinned[1:])
    return finite, [None if g is None else rest.pop(0) for g in grads]


def make_multi_step(step_fn, *, steps_per_execution, jit, run_eagerly, results, guard=None):
    """A function ``f(iterator, limit) -> (n, payload)`` running up to ``limit`` steps.

    ``step_fn(data)`` is one step (returns a boolean: the step was finite);
    ``results()`` is the payload after the last step (the metric results).
    ``guard`` (a :class:`~keras_trainkit.training.non_finite.NonFiniteGuard`)
    counts each step in the graph and halts the function's loop once a step
    was not finite. ``jit`` compiles each step with XLA.
    """
    k = int(steps_per_execution)

    def counted_step(data):
        ok = step_fn(data)
        if guard is not None:
            guard.record(ok)
        return ok

    one_step = tf.function(counted_step, jit_compile=True, reduce_retracing=True) if jit else counted_step

    def go_on(has_value):
        running = guard.running() if guard is not None else None
        return has_value if running is None else tf.logical_and(has_value, running)

    def single_step(iterator, limit):
        # steps_per_execution=1: one conditional step, no in-graph loop to run
        # (the caller never asks for 0 steps, so `limit` is 1).
        optional = iterator.get_next_as_optional()
        n, _ = tf.cond(go_on(optional.has_value()),
                       lambda: (tf.constant(1), one_step(optional.get_value())),
                       lambda: (tf.constant(0), tf.constant(True)))
        return n, results()

    def multi_step(iterator, limit):
        # Up to `limit` (<= k) steps: an epoch's last call stops at its end,
        # also on an iterator that runs on into the next epoch.
        def cond(i, ok, optional):
            return go_on(tf.logical_and(i < limit, optional.has_value()))

        def body(i, ok, optional):
            ok = one_step(optional.get_value())
            nxt = tf.cond(i + 1 < limit, iterator.get_next_as_optional, lambda: optional)
            return i + 1, ok, nxt

        n, _, _ = tf.while_loop(
            cond, body, [tf.constant(0), tf.constant(True), iterator.get_next_as_optional()])
        return n, results()

    step = single_step if k == 1 else multi_step
    if run_eagerly:
        return step
    return tf.function(step, reduce_retracing=True)


def make_multi_predict(one_step, *, steps_per_execution, run_eagerly):
    """A function ``f(iterator, limit) -> (n, outputs)`` predicting up to ``limit`` batches.

    ``one_step(data)`` gives one batch's outputs; a call concatenates those of
    its ``n`` batches along the batch axis, as ``model.predict`` does with
    ``steps_per_execution``. The first batch is ``next(iterator)``: on data that
    has ended the call raises ``tf.errors.OutOfRangeError`` (outputs of no batch
    have no shape to give), the later ones stop at the data's end.
    """

    def step(iterator, limit):
        outputs = one_step(next(iterator))
        n = tf.constant(1)
        if steps_per_execution == 1:
            return n, outputs
        growing = tf.nest.map_structure(lambda t: tf.TensorShape([None]).concatenate(t.shape[1:]), outputs)
        for _ in tf.range(limit - 1):
            tf.autograph.experimental.set_loop_options(shape_invariants=[(outputs, growing)])
            optional = iterator.get_next_as_optional()
            if not optional.has_value():
                break
            more = one_step(optional.get_value())
            outputs = tf.nest.map_structure(lambda a, b: tf.concat([a, b], axis=0), outputs, more)
            n += 1
        return n, outputs

    return step if run_eagerly else tf.function(step, reduce_retracing=True)


def bind(function, iterator):
    """``call(limit)`` running ``function(iterator, limit)``, with the trace looked up once.

    A ``tf.function`` call looks up its trace from the argument types, then
    binds and flattens the arguments: on CPU about a quarter of a small MLP's
    step. The calls of an epoch pass the same iterator and a scalar ``limit``,
    so the lookup and the flattening are done once (``_compat``); eager
    functions (``run_eagerly``) are called as they are.
    """
    if not isinstance(function, tf.types.experimental.PolymorphicFunction):
        return lambda limit: function(iterator, limit)
    return bind_traced_call(function, iterator)


class StepFunctions:
    """The Trainer's compiled train, test and predict functions, each traced once and kept.

    The train function is traced again only when ``model.optimizer`` is not
    the one it traced (callbacks such as ``GradientClipping`` swap it in
    ``on_train_begin``) or a retrace was asked for
    (``keras_trainkit.optimizers.control.retrace``, after a change a traced
    step would not see), also in the middle of ``fit`` (:meth:`bound_train`).

    Args:
        trainer: the :class:`~keras_trainkit.training.Trainer` whose steps are compiled.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.train_function = self.test_function = self.predict_function = None
        self._traced_for = None

    @property
    def _jit(self):
        trainer = self.trainer
        return trainer.jit_compile and trainer.strategy.num_replicas_in_sync == 1

    def train(self):
        """The train function ``f(iterator, limit) -> (n, metric results)``, traced if needed."""
        trainer = self.trainer
        optimizer = trainer.model.optimizer
        traced_for = (optimizer, control.retrace_requests(trainer.model))
        if self.train_function is not None and self._traced_for == traced_for:
            return self.train_function
        if not optimizer.built:
            with trainer.strategy.scope():
                optimizer.build(trainer.model.trainable_variables)
        trainer.optimizer_changed(optimizer)
        self._traced_for = traced_for
        self.train_function = make_multi_step(
            trainer.train_step, steps_per_execution=trainer.steps_per_execution, jit=self._jit,
            run_eagerly=trainer.run_eagerly, results=trainer.model.get_metrics_result, guard=trainer.non_finite)
        return self.train_function

    def bound_train(self, iterator):
        """``call(limit)`` running the current train function on ``iterator`` (see :func:`bind`).

        ``model.fit`` calls ``model.train_function`` afresh at every step, so a
        retrace asked for during ``fit`` (``SWA`` putting its learning rate in
        place of a schedule at an epoch's start) or an optimizer swapped
        takes effect at the next call; so here, binding again only when the
        function changed.
        """
        bound_function, bound_call = None, None

        def call(limit):
            nonlocal bound_function, bound_call
            function = self.train()
            if function is not bound_function:
                bound_function, bound_call = function, bind(function, iterator)
            return bound_call(limit)

        return call

    def test(self):
        """The test function ``f(iterator, limit) -> (n, metric results)``."""
        if self.test_function is None:
            trainer = self.trainer

            def cross_replica_test_step(data):
                trainer.strategy.run(trainer.test_step, args=(data,))
                return tf.constant(True)

            self.test_function = make_multi_step(
                cross_replica_test_step, steps_per_execution=trainer.steps_per_execution, jit=self._jit,
                run_eagerly=trainer.run_eagerly, results=trainer.model.get_metrics_result)
        return self.test_function

    def predict(self):
        """The predict function ``f(iterator, limit) -> (n, outputs)`` (:func:`make_multi_predict`;
        each step's outputs are the replicas' outputs concatenated)."""
        if self.predict_function is None:
            trainer = self.trainer
            strategy = trainer.strategy

            def one_step(data):
                out = strategy.run(trainer.predict_step, args=(data,))
                return tf.nest.map_structure(
                    lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), out)

            self.predict_function = make_multi_predict(
                one_step, steps_per_execution=trainer.steps_per_execution, run_eagerly=trainer.run_eagerly)
        return self.predict_function
