"""Small reference architectures for the embedded data sets.

The CLI commands (``demo``, ``lr-find``, ``check-init``, ``tune``), the examples
and the benchmarks build their models here, so one name means one network
everywhere. Every builder returns an uncompiled functional ``keras.Model``
whose last layer emits logits (use ``from_logits=True`` losses), and
``average_models`` joins trained ones into an ensemble that emits logits too.
``ClassCrossentropy`` is a ``from_logits`` classification loss for them that takes
class indices or one-hot rows, with label smoothing.

Saving and loading: every layer here is registered with Keras as
``keras_trainkit>ClassName``, so a model that uses one saves with
``model.save("m.keras")`` (an ensemble from ``average_models`` holds a
``ProbabilityAverage``). To load it, run ``import keras_trainkit`` first in the
loading process: the import registers the classes, and then
``keras.models.load_model("m.keras")`` needs no ``custom_objects``. Without the
import, Keras cannot find the classes (a ``TypeError``, "Could not locate class").
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import keras
from keras import ops

from keras_trainkit.utils.validation import (
    check_bool,
    check_in,
    check_positive,
    check_probability,
    check_shape,
)


def mlp(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    depth: int = 2,
    width: int = 256,
    activation: str = "relu",
    batch_norm: bool = False,
    dropout: float = 0.0,
    kernel_initializer="glorot_uniform",
    kernel_regularizer=None,
    name: str = "mlp",
) -> keras.Model:
    """A multilayer perceptron: ``depth`` hidden Dense layers of ``width`` units.

    Hidden layers are named ``dense_0 ... dense_{depth-1}``, the classifier
    ``logits``. Inputs of any rank are flattened first. ``kernel_initializer``
    initializes every Dense layer, ``logits`` included; ``kernel_regularizer``
    applies to the hidden layers only.

    Example:
        >>> model = mlp((40,), 10, depth=3, width=64)
        >>> model.output_shape
        (None, 10)
    """
    check_positive("depth", depth, integer=True)
    check_positive("width", width, integer=True)
    check_positive("num_classes", num_classes, integer=True)
    check_probability("dropout", dropout)
    check_bool("batch_norm", batch_norm)
    input_shape = check_shape("input_shape", input_shape, minimum_rank=1)
    inputs = keras.Input(input_shape, name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    for i in range(int(depth)):
        x = keras.layers.Dense(
            width,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            use_bias=not batch_norm,
            name=f"dense_{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=kernel_initializer,
                                 name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def cnn(
    input_shape: Sequence[int],
    num_classes: int,
    *,
    filters: Sequence[int] = (32, 64, 64),
    kernel_size: int | None = None,
    dense_units: int = 128,
    activation: str = "relu",
    batch_norm: bool = True,
    dropout: float = 0.0,
    kernel_initializer="he_normal",
    kernel_regularizer=None,
    name: str = "cnn",
) -> keras.Model:
    """A small convolutional network: 1-D for ``(length,)`` or ``(length, channels)``
    inputs (MNIST-1D), 2-D for ``(height, width, channels)`` inputs (digits).

    Each block is Conv -> (BatchNorm) -> activation; blocks after the first
    downsample with stride 2. Global average pooling, one hidden Dense layer
    and a ``logits`` layer follow. ``kernel_size`` (the convolutions' size, per
    spatial axis) defaults to 5 for 1-D inputs and 3 for 2-D ones.
    ``kernel_initializer`` and ``kernel_regularizer`` apply to the convolutions
    and the hidden Dense layer, the layers followed by ``activation`` (He
    initialization by default, for ReLU); the linear ``logits`` layer keeps
    Keras's Glorot-uniform default and no regularizer, whatever they are.

    Example:
        >>> model = cnn((40,), 10)
        >>> model.output_shape
        (None, 10)
    """
    check_positive("num_classes", num_classes, integer=True)
    if kernel_size is not None:
        check_positive("kernel_size", kernel_size, integer=True)
    check_positive("dense_units", dense_units, integer=True)
    check_probability("dropout", dropout)
    check_bool("batch_norm", batch_norm)
    if not filters:
        raise ValueError(f"Argument `filters` must name at least one block. Received: filters={filters!r}")
    for f in filters:
        check_positive("filters", f, integer=True)
    input_shape = check_shape("input_shape", input_shape, minimum_rank=1)
    rank = len(input_shape)
    check_in("len(input_shape)", rank, (1, 2, 3))
    inputs = keras.Input(input_shape, name="inputs")
    x = inputs
    if rank == 1:
        x = keras.layers.Reshape((input_shape[0], 1), name="add_channel")(x)
    conv = keras.layers.Conv2D if rank == 3 else keras.layers.Conv1D
    pool = keras.layers.GlobalAveragePooling2D if rank == 3 else keras.layers.GlobalAveragePooling1D
    size = kernel_size if kernel_size is not None else (3 if rank == 3 else 5)
    for i, f in enumerate(filters):
        x = conv(
            f,
            size,
            strides=1 if i == 0 else 2,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            name=f"conv_{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(activation, name=f"act_{i}")(x)
    x = pool(name="pool")(x)
    x = keras.layers.Dense(dense_units, activation=activation, kernel_initializer=kernel_initializer,
                           kernel_regularizer=kernel_regularizer, name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


BUILDERS = {"mlp": mlp, "cnn": cnn}
"""The reference architectures by name: ``{"mlp": mlp, "cnn": cnn}``."""


def build(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> keras.Model:
    """Build a reference architecture by name (``"mlp"`` or ``"cnn"``)."""
    check_in("model", name, BUILDERS)
    return BUILDERS[name](input_shape, num_classes, **kwargs)


@keras.saving.register_keras_serializable(package="keras_trainkit")
class ProbabilityAverage(keras.layers.Layer):
    """Average the class probabilities of several predictions.

    With ``from_logits=True`` each input holds logits and the output is
    ``log(1/K * sum_k softmax(z_k))``, computed as a log-sum-exp of the
    members' log-softmax. These are logits again (``softmax`` of them gives
    the averaged probabilities back), so the ensemble takes the same
    ``from_logits=True`` losses as its members. With ``from_logits=False``
    the inputs are probabilities and the output is their mean.
    """

    def __init__(self, from_logits: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.from_logits = check_bool("from_logits", from_logits)

    def call(self, inputs):
        stacked = ops.stack(list(inputs), axis=0)
        if not self.from_logits:
            return ops.mean(stacked, axis=0)
        log_probabilities = ops.log_softmax(stacked, axis=-1)
        return ops.logsumexp(log_probabilities, axis=0) - math.log(len(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return super().get_config() | {"from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="keras_trainkit")
class ClassCrossentropy(keras.losses.CategoricalCrossentropy):
    """Categorical cross-entropy on class indices or one-hot rows, with label smoothing.

    Targets of class indices (shape ``(n,)``, or ``(n, 1)`` against ``C > 1``
    outputs) are one-hot encoded, ``q = one_hot(y, C)``; rows ``(n, C)`` are
    used as given. Then, as ``keras.losses.CategoricalCrossentropy`` (which
    this is, with the same arguments and config), label smoothing ``eps``
    gives ``q' = q (1 - eps) + eps / C`` (Szegedy et al., "Rethinking the
    Inception Architecture for Computer Vision", CVPR 2016) and the loss is
    ``-sum_c q'_c log softmax(z)_c`` for logits ``z`` (``from_logits=True``).
    Keras's ``SparseCategoricalCrossentropy`` has no label smoothing and its
    ``CategoricalCrossentropy`` refuses class indices ("target and output must
    have the same rank"); a model compiled with this one trains and evaluates on
    the labels the user has. Indices are read on the last axis (``axis=-1``, the
    default); with another ``axis`` the targets must be rows. ``tuning.RecipeHyperModel`` compiles its
    classifiers with it. Class indices outside ``[0, C)`` give a zero row: check
    them first (the Trainer and the recipe's ``fit`` do).
    """

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="class_crossentropy", dtype=None):
        super().__init__(from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                         reduction=reduction, name=name, dtype=dtype)
        self.class_axis = axis

    def call(self, y_true, y_pred):
        classes = y_pred.shape[-1]
        if self.class_axis in (-1, len(y_pred.shape) - 1) and classes is not None and classes > 1 and (
                len(y_true.shape) == len(y_pred.shape) - 1
                or (len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1)):
            if len(y_true.shape) == len(y_pred.shape):
                y_true = ops.squeeze(y_true, axis=-1)
            y_true = ops.one_hot(ops.cast(y_true, "int32"), classes, dtype=y_pred.dtype)
        return super().call(y_true, y_pred)


def _ends_in_softmax(model: keras.Model) -> bool:
    """Whether the model's last layer is a softmax (a ``Softmax`` layer, or a layer whose
    ``activation`` is ``keras.activations.softmax``)."""
    if not model.layers:
        return False
    last = model.layers[-1]
    return isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is keras.activations.softmax


def average_models(models: Sequence[keras.Model], *, from_logits: bool = True,
                   member_names: Sequence[str] | None = None,
                   name: str = "ensemble") -> keras.Model:
    """One model whose prediction is the average of ``models``' class probabilities:
    ``p(y | x) = 1/K * sum_k softmax(f_k(x))``, an ensemble of trained models
    (for the best trials of a search, ``tuning.ensemble_best_models``).

    Args:
        models: trained single-input, single-output classifiers with the same
            input and output shapes.
        from_logits: whether the members emit logits (the output is then
            logits too, see :class:`ProbabilityAverage`) or probabilities.
            ``True`` with a member whose last layer is a softmax is refused.
        member_names: names of the members inside the ensemble (default
            ``member_0``, ``member_1``, ...); each member is wrapped under its
            name, so members that share a name can sit side by side.
        name: the ensemble model's name.

    The members keep their weights (shared, not copied).

    Example:
        >>> ensemble = average_models([mlp((40,), 10), mlp((40,), 10)])
        >>> ensemble.output_shape
        (None, 10)
    """
    if not isinstance(models, Sequence):
        raise TypeError("Argument `models` must be a list of keras.Model. "
                        f"Received: models={models!r}")
    if not models:
        raise ValueError("Argument `models` must hold at least one model. Received: models=[]")
    check_bool("from_logits", from_logits)
    for model in models:
        if not isinstance(model, keras.Model):
            raise TypeError("Argument `models` must hold keras.Model instances. "
                            f"Received an element: {model!r}")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ValueError("Argument `models` must hold models with one input and one output. "
                             f"Received: {model.name} with {len(model.inputs)} inputs and "
                             f"{len(model.outputs)} outputs")
        if from_logits and _ends_in_softmax(model):
            raise ValueError("Argument `from_logits` must be False for members that end in a "
                             f"softmax: {model.name} emits probabilities, and from_logits=True "
                             "would take a softmax of them again (a flatter average, whose argmax "
                             "can change). Received: from_logits=True")
    # `inputs`/`outputs`, not `input`/`output`: a Sequential model that was built but
    # never called has the former only.
    shapes = {(tuple(m.inputs[0].shape[1:]), tuple(m.outputs[0].shape[1:])) for m in models}
    if len(shapes) != 1:
        raise ValueError("Argument `models` must hold models with the same input and output "
                         f"shapes. Received (input, output) shapes: {sorted(shapes)}")
    if member_names is None:
        member_names = [f"member_{i}" for i in range(len(models))]
    if isinstance(member_names, str) or len(member_names) != len(models) \
            or len(set(member_names)) != len(models):
        raise ValueError("Argument `member_names` must hold one distinct name per model. "
                         f"Received: member_names={member_names!r} for {len(models)} models")
    inputs = keras.Input(tuple(models[0].inputs[0].shape[1:]), name="inputs")
    outputs = [keras.Model(m.inputs[0], m.outputs[0], name=str(member))(inputs)
               for member, m in zip(member_names, models)]
    averaged = ProbabilityAverage(from_logits=from_logits, name="probability_average")(outputs)
    return keras.Model(inputs, averaged, name=name)


__all__ = ["BUILDERS", "ClassCrossentropy", "ProbabilityAverage", "average_models", "build", "cnn", "mlp"]
