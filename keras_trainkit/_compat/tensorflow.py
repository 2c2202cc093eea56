"""TensorFlow internals used by keras_trainkit (tested with TensorFlow 2.21).

TensorFlow is imported lazily inside each function, so that importing this
module costs nothing on the JAX and PyTorch backends.
"""

from __future__ import annotations


def in_xla_context() -> bool:
    """Whether the TensorFlow graph being traced is compiled by XLA (``jit_compile=True``).

    Upstream: ``tensorflow/python/ops/control_flow_util.py``
    (``GraphOrParentsInXlaContext``), TensorFlow 2.16-2.21. There is no public
    twin; without the internal module the answer is ``False`` (the caller then
    takes its non-XLA path, which is correct, only slower, under XLA).
    Always ``False`` eagerly and on other Keras backends.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without these internals
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))


def gradient_tape_recording() -> bool:
    """Whether a ``tf.GradientTape`` may be recording the ops run (or traced) now.

    Upstream: ``tensorflow/python/eager/record.py`` (``could_possibly_record``),
    TensorFlow 2.18-2.21; there is no public twin. Inside a traced function it
    answers for the trace: a training step computes its loss under a tape, an
    evaluation step without one. Without the internal module the answer is
    ``True`` (the caller then acts as in training, its behaviour before it asked).
    """
    try:
        from tensorflow.python.eager import record
    except ImportError:  # pragma: no cover - a TensorFlow without this internal
        return True
    return bool(record.could_possibly_record())


def xla_optimization_barrier(*tensors):
    """Pass ``tensors`` through XLA's optimization barrier; returns them (a list).

    Upstream: ``tensorflow/compiler/tf2xla/python/xla.py``
    (``optimization_barrier``), TensorFlow 2.16-2.21; TensorFlow exports no
    public alias. Without it the tensors are returned as they are (correct;
    the Trainer's XLA step may then be slower, see ``training/compiled.py``).
    """
    try:
        from tensorflow.compiler.tf2xla.python.xla import optimization_barrier
    except ImportError:  # pragma: no cover - other TensorFlow builds
        return list(tensors)
    return list(optimization_barrier(*tensors))


def strategy_supports_no_merge_call() -> bool:
    """Whether the current ``tf.distribute`` strategy runs without ``merge_call``.

    Upstream: ``tf.__internal__.distribute.strategy_supports_no_merge_call``
    (``tensorflow/python/distribute/merge_call_interim.py``), TensorFlow
    2.16-2.21; Keras's ``LossScaleOptimizer`` uses the same test. Without it
    the answer is ``False``: the caller then uses ``merge_call``, which every
    strategy supports.
    """
    import tensorflow as tf

    internal = getattr(getattr(tf, "__internal__", None), "distribute", None)
    check = getattr(internal, "strategy_supports_no_merge_call", None)
    return bool(check()) if check is not None else False


def bind_traced_call(function, *example_args):
    """A callable ``call(*flat_extra)`` running ``function``'s trace for ``example_args`` directly.

    A ``tf.function`` call looks up its trace from the argument types, then
    binds and flattens the arguments: on CPU about a quarter of a small MLP's
    step. When the same arguments (an iterator) are passed call after call,
    the lookup and flattening can be done once. Returns ``call(limit)`` where
    ``limit`` is the last (scalar ``int32``) argument.

    Upstream: ``ConcreteFunction._call_flat``
    (``tensorflow/python/eager/polymorphic_function/concrete_function.py``),
    TensorFlow 2.16-2.21. Without it, the public path: ``function(*args, limit)``.
    """
    import tensorflow as tf

    concrete = function.get_concrete_function(*example_args, tf.TensorSpec([], tf.int32))
    call_flat = getattr(concrete, "_call_flat", None)
    if call_flat is None:  # pragma: no cover - a TensorFlow without it
        return lambda limit: function(*example_args, limit)
    inputs = tf.nest.flatten(list(example_args), expand_composites=True)
    captured = concrete.captured_inputs
    return lambda limit: call_flat(inputs + [limit], captured)


def dataset_graph_def(dataset):
    """The ``GraphDef`` of a ``tf.data.Dataset``'s pipeline, or ``None`` when it cannot be read.

    Upstream: ``DatasetV2._as_serialized_graph``
    (``tensorflow/python/data/ops/dataset_ops.py``), TensorFlow 2.16-2.21; no
    public twin. Used only to explain, before training, why a pipeline cannot be
    resumed exactly; ``None`` skips that explanation.
    """
    import tensorflow as tf

    try:
        serialized = dataset._as_serialized_graph()
        graph = tf.compat.v1.GraphDef()
        graph.ParseFromString(serialized.numpy())
        return graph
    except Exception:  # an inspection aid only; never block training on it
        return None
