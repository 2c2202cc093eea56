"""A KerasTuner ``HyperModel`` that tunes a whole training recipe.

``RecipeHyperModel`` builds the model from an architecture space and compiles
it with the optimizer, schedule, initializer and regularization spaces; its
``fit`` applies the tuned batch size, epochs, schedule length, clipping and
label smoothing, so batch size and epochs are tuned without a hand-written
``HyperModel.fit``. It works unchanged with ``keras_tuner.RandomSearch``,
``Hyperband``, ``BayesianOptimization`` and ``GridSearch`` (Hyperband sets
``epochs`` itself; the recipe then follows Hyperband's value).

Labels are class indices; they are one-hot encoded inside ``fit`` so that
label smoothing applies. The objective to use is ``"val_accuracy"``.
"""

from __future__ import annotations

import math

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from keras_trainkit.datasets import random_shift
from keras_trainkit.tuning.spaces import (
    ARCHITECTURES,
    InitializerSpace,
    OptimizerSpace,
    RegularizationSpace,
    ScheduleSpace,
    Space,
    TrainingSpace,
)
from keras_trainkit.utils.validation import check_in, check_positive


class RecipeHyperModel(keras_tuner.HyperModel):
    """Tune architecture, optimizer, schedule, batch size, epochs, clipping,
    initializer and regularization of a classifier together.

    Args:
        input_shape: shape of one example, e.g. ``(40,)`` for MNIST-1D.
        num_classes: number of classes; labels are integers in ``[0, num_classes)``.
        architecture: ``"mlp"``, ``"cnn"`` or a space with
            ``build(hp, input_shape, num_classes, **layer_kwargs)``.
        optimizer, schedule, training, regularization, initializer: the spaces;
            defaults are the library's default spaces.
        seed: seeds Keras before each build, so a trial is reproducible.

    Example:
        >>> import keras_tuner
        >>> hypermodel = RecipeHyperModel((40,), 10, architecture="mlp")
        >>> model = hypermodel.build(keras_tuner.HyperParameters())
        >>> model.output_shape
        (None, 10)
    """

    def __init__(self, input_shape, num_classes: int, architecture="mlp",
                 optimizer: OptimizerSpace | None = None, schedule: ScheduleSpace | None = None,
                 training: TrainingSpace | None = None,
                 regularization: RegularizationSpace | None = None,
                 initializer: InitializerSpace | None = None, seed: int | None = 0,
                 name: str | None = None, tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        check_positive("num_classes", num_classes, integer=True)
        if isinstance(architecture, str):
            check_in("architecture", architecture, ARCHITECTURES)
            architecture = ARCHITECTURES[architecture]()
        if not isinstance(architecture, Space) or not hasattr(architecture, "build"):
            raise TypeError("Argument `architecture` must be 'mlp', 'cnn' or a space with a "
                            f"`build(hp, input_shape, num_classes)` method. Received: architecture={architecture!r}")
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.architecture = architecture
        self.optimizer_space = optimizer or OptimizerSpace()
        self.schedule_space = schedule or ScheduleSpace()
        self.training_space = training or TrainingSpace()
        self.regularization_space = regularization or RegularizationSpace()
        self.initializer_space = initializer or InitializerSpace()
        self.seed = seed

    def build(self, hp) -> keras.Model:
        """Register every hyperparameter and return the compiled model.

        The optimizer compiled here uses a constant learning rate; ``fit``
        recompiles with the tuned schedule once the number of updates is known.
        """
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        regularization = self.regularization_space.sample(hp)
        model = self.architecture.build(
            hp, self.input_shape, self.num_classes,
            kernel_initializer=self.initializer_space.sample(hp), **regularization)
        training = self.training_space.sample(hp)
        optimizer = self.optimizer_space.build(hp)
        # Register the schedule's hyperparameters now, so every search space is
        # complete before the first trial (values are rebuilt in ``fit``).
        self.schedule_space.build(hp, 1e-3, 100)
        self._compile(model, optimizer, training)
        return model

    def _compile(self, model, optimizer, training) -> None:
        if training["clip_norm"] is not None:
            optimizer.global_clipnorm = training["clip_norm"]
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=training["label_smoothing"]),
            metrics=["accuracy"],
        )

    def fit(self, hp, model, x, y=None, validation_data=None, callbacks=None, epochs=None,
            verbose=0, **kwargs):
        """Train with the tuned batch size, epochs and schedule.

        Args:
            x, y: training arrays (labels as integers).
            validation_data: ``(x_val, y_val)`` arrays; required for the
                ``val_accuracy`` objective.
            epochs: set by Hyperband; otherwise the tuned ``epochs`` is used.
            **kwargs: passed to ``model.fit`` (``initial_epoch`` among them).
        """
        training = self.training_space.sample(hp)
        epochs = int(epochs) if epochs is not None else int(training["epochs"])
        batch_size = int(training["batch_size"])
        total_steps = math.ceil(len(x) / batch_size) * epochs
        base_learning_rate = self.optimizer_space.sample(hp)[1]["learning_rate"]
        schedule = self.schedule_space.build(hp, base_learning_rate, total_steps)
        # Recompiling swaps the optimizer and keeps the weights.
        self._compile(model, self.optimizer_space.build(hp, learning_rate=schedule), training)
        train = random_shift(self._dataset(x, y, batch_size, shuffle=True), training["shift"],
                             self.seed)
        validation = None
        if validation_data is not None:
            validation = self._dataset(*validation_data, batch_size=512, shuffle=False)
            validation = validation.prefetch(tf.data.AUTOTUNE)
        kwargs.setdefault("shuffle", False)  # the dataset shuffles itself each epoch
        return model.fit(train.prefetch(tf.data.AUTOTUNE), validation_data=validation, epochs=epochs,
                         callbacks=callbacks, verbose=verbose, **kwargs)

    def _dataset(self, x, y, batch_size, shuffle):
        y = keras.utils.to_categorical(np.asarray(y), self.num_classes).astype("float32")
        data = tf.data.Dataset.from_tensor_slices((np.asarray(x, dtype="float32"), y))
        if shuffle:
            data = data.shuffle(len(x), seed=self.seed, reshuffle_each_iteration=True)
        return data.batch(batch_size)


__all__ = ["RecipeHyperModel"]
