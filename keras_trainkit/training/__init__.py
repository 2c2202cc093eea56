"""The ``GradientTape`` training loop (``Trainer``) and its step hooks.

See ``docs/custom_loop.md`` for the path from a plain ``GradientTape`` loop to the
Trainer, its hooks, distribution and resume.
"""

from keras_trainkit.training._data import check_arrays, check_dataset
from keras_trainkit.training.batch_size_schedule import BatchSizeSchedule
from keras_trainkit.training.trainer import NonFiniteLossError, Trainer

__all__ = ["BatchSizeSchedule", "NonFiniteLossError", "Trainer", "check_arrays", "check_dataset"]
