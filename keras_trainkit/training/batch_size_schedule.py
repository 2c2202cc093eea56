"""``BatchSizeSchedule``: grow the batch size between epochs instead of decaying the learning rate."""

from __future__ import annotations

import math
import numbers

import keras

from keras_trainkit.utils.validation import check_condition, check_number, check_positive, check_type


@keras.saving.register_keras_serializable(package="keras_trainkit")
class BatchSizeSchedule:
    """The batch size of each epoch, for ``Trainer.fit(..., batch_size=schedule)``.

    Smith et al. showed that where a step schedule would divide the learning
    rate by ``factor``, multiplying the batch size by ``factor`` instead gives
    the same test accuracy with fewer parameter updates. Geometric form
    (``every`` epochs)::

        batch_size(epoch) = min(maximum, round(initial * factor ** (epoch // every)))

    Explicit form (``boundaries``, a ``{first_epoch: batch_size}`` mapping)::

        batch_size(epoch) = boundaries[max(e for e in boundaries if e <= epoch)]
                            (``initial`` before the first boundary)

    With neither, the batch size stays ``initial``. Epochs count from 0, as
    ``fit``'s ``epoch`` arguments do. The Trainer re-batches NumPy inputs at
    the start of each epoch whose size changes; a ``tf.data.Dataset`` is
    batched by its owner, so a schedule is refused for one.

    Args:
        initial: batch size of epoch 0 (a positive integer).
        factor: multiplier applied every ``every`` epochs (>= 1).
        every: epochs between increases (a positive integer), or ``None``.
        maximum: upper bound on the batch size (>= ``initial``), or ``None``.
        boundaries: ``{epoch: batch_size}`` (non-negative integer epochs,
            positive integer sizes), or ``None``; excludes ``every``.

    Example:
        >>> schedule = BatchSizeSchedule(initial=32, factor=2, every=5, maximum=128)
        >>> [schedule(e) for e in (0, 4, 5, 10, 15, 30)]
        [32, 32, 64, 128, 128, 128]
        >>> BatchSizeSchedule(initial=16, boundaries={3: 64, 6: 256})(4)
        64

    Paper: Smith, Kindermans, Ying and Le 2018, "Don't Decay the Learning
    Rate, Increase the Batch Size" (ICLR).
    """

    def __init__(self, initial=32, factor=2.0, every=None, maximum=None, boundaries=None):
        check_positive("initial", initial, integer=True)
        check_number("factor", factor, minimum=1.0)
        if every is not None:
            check_positive("every", every, integer=True)
        if maximum is not None:
            check_positive("maximum", maximum, integer=True)
            check_condition("maximum", maximum, maximum >= initial,
                            f"must be >= `initial` ({initial})")
        if boundaries is not None:
            check_type("boundaries", boundaries, dict)
            check_condition("boundaries", boundaries, every is None,
                            "cannot be combined with `every`; give one or the other")
            parsed = {}
            for epoch, size in boundaries.items():
                # JSON configs turn integer keys into strings.
                if isinstance(epoch, str) and epoch.isdigit():
                    epoch = int(epoch)
                for value in (epoch, size):
                    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                        raise TypeError(
                            "Argument `boundaries` must map integer epochs to integer batch "
                            f"sizes. Received: boundaries={boundaries!r}"
                        )
                check_condition("boundaries", boundaries, epoch >= 0 and size > 0,
                                "must map epochs >= 0 to batch sizes > 0")
                if maximum is not None:
                    check_condition("boundaries", boundaries, size <= maximum,
                                    f"must hold batch sizes <= `maximum` ({maximum})")
                parsed[int(epoch)] = int(size)
            boundaries = dict(sorted(parsed.items()))
        self.initial = int(initial)
        self.factor = float(factor)
        self.every = None if every is None else int(every)
        self.maximum = None if maximum is None else int(maximum)
        self.boundaries = boundaries

    def __call__(self, epoch) -> int:
        """The batch size of ``epoch`` (an integer >= 0)."""
        check_number("epoch", epoch, minimum=0, integer=True)
        epoch = int(epoch)
        size = self.initial
        if self.boundaries:
            for first, value in self.boundaries.items():
                if first <= epoch:
                    size = value
        elif self.every is not None:
            try:
                size = self.initial * self.factor ** (epoch // self.every)
            except OverflowError:
                size = math.inf
        if self.maximum is not None:
            size = min(size, self.maximum)
        if not math.isfinite(size):
            raise ValueError(
                "The batch size overflows at this epoch; give the schedule a `maximum`. "
                f"Received: epoch={epoch}"
            )
        return int(round(size))

    def get_config(self) -> dict:
        """The constructor arguments; ``from_config(get_config())`` round-trips."""
        return {
            "initial": self.initial,
            "factor": self.factor,
            "every": self.every,
            "maximum": self.maximum,
            "boundaries": None if self.boundaries is None else dict(self.boundaries),
        }

    @classmethod
    def from_config(cls, config: dict) -> "BatchSizeSchedule":
        """Rebuild a schedule from :meth:`get_config`."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"BatchSizeSchedule({args})"
