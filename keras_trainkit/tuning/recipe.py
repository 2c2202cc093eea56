"""A KerasTuner ``HyperModel`` that tunes a whole training recipe.

``RecipeHyperModel`` builds the model from an architecture space and compiles
it with the optimizer, schedule, initializer and regularization spaces; its
``fit`` applies the tuned batch size, epochs, schedule length, clipping and
label smoothing, so batch size and epochs are tuned without a hand-written
``HyperModel.fit``. It works unchanged with KerasTuner's tuners and ours
(``RandomSearch``, ``BayesianOptimization``, ``Hyperband``, ``GridSearch``;
Hyperband sets ``epochs`` itself and the recipe then follows Hyperband's value).

Classification is the default: the model outputs logits, labels are class
indices or one-hot rows, the loss is ``models.ClassCrossentropy`` (label
smoothing on either, so the models, ``get_best_models``' too, evaluate on the
labels the search took), and the objective is ``"val_accuracy"``. With ``loss=`` (and
``metrics=``) it trains any other task, regression included, on the targets as
given; its objective is then ``"val_loss"``.
"""

from __future__ import annotations

import inspect
import math

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from keras_trainkit.datasets import random_shift
from keras_trainkit.models import ClassCrossentropy
from keras_trainkit.tuning.architectures import ARCHITECTURES
from keras_trainkit.tuning.spaces import (
    InitializerSpace,
    OptimizerSpace,
    RegularizationSpace,
    ScheduleSpace,
    TrainingSpace,
)
from keras_trainkit.utils.pipelines import array_dataset
from keras_trainkit.utils.validation import check_in, check_positive, check_seed, check_shape, check_type

# The keyword arguments the recipe passes to an architecture that accepts them.
LAYER_KWARGS = ("kernel_initializer", "dropout", "kernel_regularizer")


def _architecture_builder(architecture):
    """``(build function, takes layer kwargs)`` for a name, a space, an object with
    ``build(hp, input_shape, num_classes)`` or a plain function of those."""
    if isinstance(architecture, str):
        check_in("architecture", architecture, ARCHITECTURES)
        architecture = ARCHITECTURES[architecture]()
    build = getattr(architecture, "build", None)
    if not callable(build):
        build = architecture if callable(architecture) else None
    if build is None:
        raise TypeError(
            "Argument `architecture` must be 'mlp', 'cnn', a function "
            "`f(hp, input_shape, num_classes) -> keras.Model` or an object with a "
            "`build(hp, input_shape, num_classes)` method. "
            f"Received: architecture={architecture!r}")
    try:
        parameters = inspect.signature(build).parameters.values()
    except (TypeError, ValueError):
        return build, False
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return build, True
    return build, set(LAYER_KWARGS) <= {p.name for p in parameters}


def _check_spaces(**spaces) -> None:
    """Each of ``spaces`` (``name=(value, space class)``) is ``None`` or that space: any
    other value (a Keras optimizer for ``optimizer``, a name) failed in every trial's build."""
    for name, (value, space_class) in spaces.items():
        if value is not None and not isinstance(value, space_class):
            raise TypeError(f"Argument `{name}` must be a tuning.{space_class.__name__} (or None "
                            f"for the default one). Received: {name}={value!r}")


def _check_class_indices(name: str, y: np.ndarray, num_classes: int) -> None:
    """Refuse class labels ``to_categorical`` would misread: it indexes with ``int64``
    casts, so ``-1`` became the last class and ``0.7`` class 0, silently."""
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(f"Argument `{name}` must hold class indices (shape (n,) or (n, 1)) "
                         f"or one-hot rows (shape (n, {num_classes})). "
                         f"Received: {name} with labels of shape {y.shape}")
    flat = y.reshape(-1)
    if np.issubdtype(y.dtype, np.number) or y.dtype == bool:
        labels = flat.astype(float)
        bad = flat[~np.isfinite(labels) | (labels != np.round(labels))
                   | (labels < 0) | (labels >= num_classes)]
    else:
        bad = flat
    if bad.size:
        shown = np.unique(bad)[:3].tolist()
        raise ValueError(f"Argument `{name}` must hold class indices, integers in "
                         f"[0, {num_classes}) (num_classes={num_classes}). Received: {name} "
                         f"with labels such as {shown}")


class RecipeHyperModel(keras_tuner.HyperModel):
    """Tune architecture, optimizer, schedule, batch size, epochs, clipping,
    initializer and regularization of a model together.

    Args:
        input_shape: shape of one example, e.g. ``(40,)`` for MNIST-1D.
        num_classes: number of classes; labels are integers in
            ``[0, num_classes)`` or one-hot rows. With ``loss=``, the width of
            the model's output (or give ``num_outputs``).
        architecture: ``"mlp"``, ``"cnn"``, a space such as ``MLPSpace()``, a
            function ``f(hp, input_shape, num_classes) -> keras.Model``, or any
            object with a ``build(hp, input_shape, num_classes)`` method. The
            model's output must be logits for the default classification loss.
            When the function or method also accepts ``kernel_initializer``,
            ``dropout`` and ``kernel_regularizer`` (or ``**layer_kwargs``), it
            gets the initializer and regularization spaces' choices; otherwise
            those spaces are not searched.
        optimizer, schedule, training, regularization, initializer: the spaces;
            defaults are the library's default spaces (with a ``loss`` of one's
            own, the default training space has no label smoothing).
        seed: seeds Keras before each build, so a trial is reproducible.
        loss: ``None`` (classification with label smoothing) or any loss
            ``model.compile`` takes (e.g. ``"mse"``); the targets are then
            used as given.
        metrics: metrics for ``model.compile``; default ``["accuracy"]`` for
            classification, none with a ``loss``.
        num_outputs: the output width for a ``loss`` of one's own (instead of
            ``num_classes``), e.g. 1 for a scalar regression.

    Attributes:
        objective: ``"val_accuracy"`` for classification with accuracy,
            ``"val_loss"`` otherwise; our tuners use it when no objective is given.

    Example:
        >>> import keras_tuner
        >>> hypermodel = RecipeHyperModel((40,), 10, architecture="mlp")
        >>> model = hypermodel.build(keras_tuner.HyperParameters())
        >>> model.output_shape
        (None, 10)
        >>> regression = RecipeHyperModel((8,), num_outputs=1, loss="mse", metrics=["mae"])
        >>> regression.build(keras_tuner.HyperParameters()).output_shape
        (None, 1)
    """

    def __init__(self, input_shape, num_classes: int | None = None, architecture="mlp",
                 optimizer: OptimizerSpace | None = None, schedule: ScheduleSpace | None = None,
                 training: TrainingSpace | None = None,
                 regularization: RegularizationSpace | None = None,
                 initializer: InitializerSpace | None = None, seed: int | None = 0,
                 name: str | None = None, tunable: bool = True, *, loss=None, metrics=None,
                 num_outputs: int | None = None):
        super().__init__(name=name, tunable=check_type("tunable", tunable, bool))
        _check_spaces(optimizer=(optimizer, OptimizerSpace), schedule=(schedule, ScheduleSpace),
                      training=(training, TrainingSpace),
                      regularization=(regularization, RegularizationSpace),
                      initializer=(initializer, InitializerSpace))
        if isinstance(metrics, str):
            raise TypeError("Argument `metrics` must be a list of metrics, as in "
                            f"`compile`. Received: metrics={metrics!r}")
        self.loss = loss
        self.outputs = self._output_width(num_classes, num_outputs, loss)
        self.build_architecture, self.takes_layer_kwargs = _architecture_builder(architecture)
        if not self.takes_layer_kwargs and (regularization is not None or initializer is not None):
            raise ValueError(
                "The architecture takes no `kernel_initializer`, `dropout` and "
                "`kernel_regularizer` arguments, so the initializer and regularization spaces "
                "would tune nothing: accept them (or **layer_kwargs), or leave `initializer` "
                f"and `regularization` out. Received: architecture={architecture!r}")
        if loss is not None and training is not None and training.label_smoothing is not None:
            raise ValueError(
                "Label smoothing applies to the built-in classification loss only: with a "
                "`loss` of your own, give TrainingSpace(label_smoothing=None). "
                f"Received: loss={loss!r}, training.label_smoothing={training.label_smoothing!r}")
        self.input_shape = check_shape("input_shape", input_shape)
        self.num_classes = self.outputs
        self.architecture = architecture
        self.metrics = (["accuracy"] if loss is None else []) if metrics is None else list(metrics)
        self.optimizer_space = optimizer or OptimizerSpace()
        self.schedule_space = schedule or ScheduleSpace()
        self.training_space = training or TrainingSpace(
            label_smoothing=(0.0, 0.2) if loss is None else None)
        self.regularization_space = regularization or RegularizationSpace()
        self.initializer_space = initializer or InitializerSpace()
        self.seed = check_seed("seed", seed)

    @staticmethod
    def _output_width(num_classes, num_outputs, loss) -> int:
        if num_classes is not None and num_outputs is not None:
            raise ValueError("Give `num_classes` (classification) or `num_outputs` (with a "
                             f"`loss`), not both. Received: num_classes={num_classes!r}, "
                             f"num_outputs={num_outputs!r}")
        if num_outputs is not None:
            if loss is None:
                raise ValueError("Argument `num_outputs` is for a `loss` of your own; for "
                                 "classification give `num_classes`. "
                                 f"Received: num_outputs={num_outputs!r}, loss=None")
            return check_positive("num_outputs", num_outputs, integer=True)
        if num_classes is None:
            raise ValueError("Argument `num_classes` (or `num_outputs` with a `loss`) is "
                             "required. Received: num_classes=None")
        check_positive("num_classes", num_classes, integer=True)
        if loss is None and num_classes < 2:
            raise ValueError("Argument `num_classes` must be at least 2 for classification: a "
                             "softmax over one class is always 1, so the loss is 0 and no trial "
                             "learns anything. For a binary task give num_classes=2 (or a "
                             "`loss` of your own with num_outputs=1). "
                             f"Received: num_classes={num_classes!r}")
        return num_classes

    @property
    def objective(self) -> str:
        """The objective a tuner should use for this recipe."""
        named = {m for m in self.metrics if isinstance(m, str)}
        return "val_accuracy" if {"accuracy", "acc"} & named else "val_loss"

    def build(self, hp) -> keras.Model:
        """Register every hyperparameter and return the compiled model.

        The optimizer compiled here uses a constant learning rate; ``fit``
        recompiles with the tuned schedule once the number of updates is known.
        """
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        layer_kwargs = {}
        if self.takes_layer_kwargs:
            layer_kwargs = dict(self.regularization_space.build(hp),
                                kernel_initializer=self.initializer_space.build(hp))
        model = self.build_architecture(hp, self.input_shape, self.outputs, **layer_kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError("The architecture must return a keras.Model. "
                            f"Received: {model!r} from architecture={self.architecture!r}")
        training = self.training_space.build(hp)
        optimizer = self.optimizer_space.build(hp)
        # Register the schedule's hyperparameters now, so every search space is
        # complete before the first trial (values are rebuilt in ``fit``).
        self.schedule_space.build(hp, 1e-3, 100)
        self._compile(model, optimizer, training)
        return model

    def _compile(self, model, optimizer, training) -> None:
        if training["clip_norm"] is not None:
            optimizer.global_clipnorm = training["clip_norm"]
        loss = self.loss
        if loss is None:
            loss = ClassCrossentropy(from_logits=True, label_smoothing=training["label_smoothing"])
        model.compile(optimizer=optimizer, loss=loss, metrics=list(self.metrics))

    def fit(self, hp, model, x, y=None, validation_data=None, callbacks=None, epochs=None,
            verbose=0, **kwargs):
        """Train with the tuned batch size, epochs and schedule.

        Args:
            x, y: training arrays (class indices or one-hot rows for
                classification; the targets as the loss expects otherwise).
            validation_data: ``(x_val, y_val)`` arrays; required for the
                ``val_*`` objectives.
            epochs: set by Hyperband; otherwise the tuned ``epochs`` is used.
            **kwargs: passed to ``model.fit`` (``initial_epoch`` among them).
        """
        training = self.training_space.build(hp)
        epochs = int(epochs) if epochs is not None else int(training["epochs"])
        batch_size = int(training["batch_size"])
        total_steps = math.ceil(len(x) / batch_size) * epochs
        base_learning_rate = self.optimizer_space.sample(hp)[1]["learning_rate"]
        schedule = self.schedule_space.build(hp, base_learning_rate, total_steps)
        # Recompiling swaps the optimizer and keeps the weights. KerasTuner calls fit outside
        # its `distribution_strategy`'s scope: the new optimizer is made in the model's own.
        with _strategy_scope(model):
            self._compile(model, self.optimizer_space.build(hp, learning_rate=schedule), training)
        train = random_shift(self._dataset(x, y, batch_size, shuffle=True), training["shift"],
                             self.seed)
        validation = None
        if validation_data is not None:
            validation = self._dataset(*validation_data, batch_size=512, shuffle=False,
                                       name="validation_data")
        kwargs.setdefault("shuffle", False)  # the dataset shuffles itself each epoch
        return model.fit(train.prefetch(tf.data.AUTOTUNE), validation_data=validation,
                         epochs=epochs, callbacks=callbacks, verbose=verbose, **kwargs)

    def _targets(self, y, name: str = "y"):
        y = np.asarray(y)
        if self.loss is not None:
            return y.astype("float32") if np.issubdtype(y.dtype, np.floating) else y
        if y.ndim == 2 and y.shape[1] == self.outputs and self.outputs > 1:
            return y.astype("float32")  # one-hot (or probability) rows
        _check_class_indices(name, y, self.outputs)
        return keras.utils.to_categorical(y, self.outputs).astype("float32")

    def _dataset(self, x, y, batch_size, shuffle, name: str = "y"):
        """The shared array pipeline (``utils.pipelines``), with its epoch length stated;
        ``name`` is the argument that gave ``y``, for the error message."""
        data = array_dataset(np.asarray(x, dtype="float32"), self._targets(y, name),
                             batch_size=batch_size, shuffle=shuffle, seed=self.seed)
        return data.apply(tf.data.experimental.assert_cardinality(math.ceil(len(x) / batch_size)))


def _strategy_scope(model):
    """The scope of the ``tf.distribute`` strategy ``model`` was built under (the default one's
    when none): an optimizer made outside it cannot update the model's variables."""
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    return strategy.scope()


__all__ = ["LAYER_KWARGS", "RecipeHyperModel"]
