"""Gradient clipping as a callback: add it to ``model.fit`` with any compiled optimizer."""

from __future__ import annotations

import logging

import keras
import numpy as np

from keras_trainkit.callbacks._monitor import TrainkitCallback, sync_model_state
from keras_trainkit.utils.validation import check_bool
from keras_trainkit.callbacks._registry import register
from keras_trainkit.optimizers import control
from keras_trainkit.optimizers.transforms import (
    AdaptiveGradientClipping,
    AutoClip,
    ClipByGlobalNorm,
    ClipByValue,
)
from keras_trainkit.utils.validation import check_in

logger = logging.getLogger(__name__)

MODES = ("global_norm", "value", "agc", "autoclip")


@register
class GradientClipping(TrainkitCallback):
    """Clip the gradients of ``model.fit`` (or the ``Trainer``) without touching the
    model or the optimizer, and log ``grad_norm`` and ``clip_fraction``.

    The clipping math is that of the gradient transforms in
    ``keras_trainkit.optimizers.transforms`` (nothing is re-implemented):

    * ``"global_norm"`` (``ClipByGlobalNorm``): ``g <- g * max_norm / max(||g||, max_norm)``
      with ``||g||`` the global L2 norm over all variables;
    * ``"value"`` (``ClipByValue``): ``g <- clip(g, -clip_value, clip_value)``;
    * ``"agc"`` (``AdaptiveGradientClipping``): unit-wise
      ``g <- g * clipping * max(||w||, eps) / ||g||`` where ``||g|| / max(||w||, eps) > clipping``;
    * ``"autoclip"`` (``AutoClip``): clip the global norm at the ``percentile``-th
      percentile of the norms seen so far (last ``history_size`` steps; the history
      carries over to the next ``fit`` of the same model and optimizer, as with a
      ``TransformedOptimizer`` compiled in).

    How: in ``on_train_begin`` the transform is attached to the compiled
    optimizer (``keras_trainkit.optimizers.control.attach_transforms``: a
    ``TransformedOptimizer`` around the same optimizer object, variables and
    slots, run by the same chain as every other path), the wrapper is built,
    and the train function is retraced on its first batch (``model.fit`` traces lazily, after
    ``on_train_begin``; works with ``jit_compile`` True or False). In
    ``on_train_end`` the original optimizer is put back. Checkpoints written
    during training hold the original optimizer's variables only, so a run that
    ``keras.callbacks.BackupAndRestore`` resumes starts AutoClip's history empty
    and logs a warning saying so; for an exact resume compile
    ``TransformedOptimizer(optimizer, [AutoClip(...)])`` (the ``Trainer`` refuses
    ``"autoclip"`` with ``BackupAndRestore`` or ``checkpoint_dir``: pass ``AutoClip`` in
    its ``gradient_transforms``). Under
    ``tf.distribute`` the clipping sees the all-reduced (global) gradient.
    A ``LossScaleOptimizer`` (``mixed_float16``) is refused: use
    ``TransformedOptimizer`` in ``compile()`` there.

    Logs: after each batch ``grad_norm`` (global norm *before* clipping, of the
    batch's last step) and ``clip_fraction`` (for ``global_norm``/``autoclip``:
    1 if the step was clipped; ``value``: fraction of clipped elements;
    ``agc``: fraction of clipped units), plus ``clip_threshold`` for
    ``autoclip``; at epoch end their means over the epoch's batches, so
    ``keras.callbacks.TensorBoard`` and ``CSVLogger`` listed after this
    callback record them.

    Args:
        mode: ``"global_norm"``, ``"value"``, ``"agc"`` or ``"autoclip"``.
        max_norm: the global-norm bound (``global_norm``).
        clip_value: the element bound (``value``).
        clipping: the AGC ratio ``lambda`` (``agc``).
        eps: the AGC floor on the weight norm (``agc``).
        exclude: regular expressions of variable paths AGC leaves alone
            (e.g. ``("logits",)`` for the classifier layer, as the paper does).
        percentile: the AutoClip percentile in [0, 100] (``autoclip``).
        history_size: how many past norms AutoClip keeps (``autoclip``).
        log_statistics: add the statistics to the logs.

    Example:
        >>> import keras, numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(keras.optimizers.SGD(0.1), "mse")
        >>> clip = GradientClipping("global_norm", max_norm=1.0)
        >>> h = model.fit(np.ones((8, 2)), np.ones(8), epochs=1, verbose=0, callbacks=[clip])
        >>> sorted(k for k in h.history if k != "loss")
        ['clip_fraction', 'grad_norm']

    Papers: Pascanu et al. 2013 (global norm); Brock et al. 2021, "High-Performance
    Large-Scale Image Recognition Without Normalization" (AGC); Seetharaman et
    al. 2020, "AutoClip: Adaptive Gradient Clipping for Source Separation Networks".
    """

    def __init__(
        self,
        mode="global_norm",
        max_norm=1.0,
        clip_value=1.0,
        clipping=0.01,
        eps=1e-3,
        exclude=(),
        percentile=10.0,
        history_size=1000,
        log_statistics=True,
    ):
        super().__init__()
        check_in("mode", mode, MODES)
        check_bool("log_statistics", log_statistics)
        self.mode = mode
        self.max_norm = max_norm
        self.clip_value = clip_value
        self.clipping = clipping
        self.eps = eps
        self.exclude = exclude
        self.percentile = percentile
        self.history_size = history_size
        self.log_statistics = log_statistics
        # Build every mode's transform once so each argument is validated by
        # the transform that owns it (the same checks and messages).
        for candidate in MODES:
            self._make_transform(candidate)
        self.max_norm, self.clip_value = float(max_norm), float(clip_value)
        self.clipping, self.eps = float(clipping), float(eps)
        self.exclude = tuple(self._make_transform("agc").exclude)
        self.percentile, self.history_size = float(percentile), int(history_size)
        self._reset_state()

    @property
    def carries_state(self) -> bool:
        """Whether the transform it attaches carries state from step to step (``"autoclip"``:
        the history of norms), which checkpoints of the model and optimizer do not hold."""
        return self.mode == "autoclip"

    def _make_transform(self, mode):
        name = f"gradient_clipping_{mode}"
        if mode == "global_norm":
            return ClipByGlobalNorm(self.max_norm, name=name)
        if mode == "value":
            return ClipByValue(self.clip_value, name=name)
        if mode == "agc":
            return AdaptiveGradientClipping(self.clipping, eps=self.eps, exclude=self.exclude, name=name)
        return AutoClip(percentile=self.percentile, history_size=self.history_size, name=name)

    def _reset_state(self):
        self.transform = None
        self._trained = None  # (model, optimizer, variable ids) the transform was built for
        self._batch_stats = []
        self._checked = False

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        # The transform (AutoClip's history of norms) carries over from one fit to the next on
        # the same model, optimizer and variables, as in a TransformedOptimizer compiled in.
        trained = self._training_key()
        kept = self.transform if self._trained == trained else None
        self._reset_state()
        self.transform = kept or self._make_transform(self.mode)
        self._trained = trained
        control.attach_transforms(self.model, self, [self.transform])

    def _training_key(self):
        """What the transform's state belongs to: the model, its (leaf) optimizers and variables."""
        return (id(self.model), tuple(id(leaf) for leaf in control.model_leaf_optimizers(self.model)),
                tuple(id(v) for v in self.model.trainable_variables))

    def on_epoch_begin(self, epoch, logs=None):
        self._batch_stats = []
        super().on_epoch_begin(epoch, logs)

    def on_first_epoch_begin(self, epoch):
        """Warn when a backup was restored (``keras.callbacks.BackupAndRestore`` set the first
        epoch) but AutoClip's history starts empty: the backup holds the model and the compiled
        optimizer, not the attached transform, so this run clips differently from an
        uninterrupted one. Only a warning: under ``model.fit`` a callback cannot see the others
        before the backup exists, and the backup is there to be resumed from (the Trainer,
        which sees them, refuses the combination before training)."""
        carried = self.transform.carried_variables
        if not self._resumed_by_backup(epoch) or not carried:
            return
        sync_model_state(self.model)
        if any(np.any(keras.ops.convert_to_numpy(v)) for v in carried):
            return  # the history carried over from an earlier fit in this process
        logger.warning(
            "GradientClipping(%r): keras.callbacks.BackupAndRestore resumed training at epoch %d with "
            "the model and optimizer it saved, but AutoClip's history of gradient norms is not in the "
            "backup and starts empty, so this run clips differently from an uninterrupted one. For "
            "an exact resume compile TransformedOptimizer(optimizer, [AutoClip(...)]) instead, whose "
            "history is optimizer state that the backup holds.", self.mode, epoch)

    def _statistics(self):
        sync_model_state(self.model)
        stats = self.transform.get_statistics()
        out = {"grad_norm": stats["grad_norm"], "clip_fraction": stats["clip_fraction"]}
        if "threshold" in stats:
            out["clip_threshold"] = stats["threshold"]
        return out

    def on_train_batch_end(self, batch, logs=None):
        if self.transform is None or not self.transform.built:
            return
        if not self._checked:
            self._checked = True
            if control.warn_if_unused(self.model, self):
                return
        stats = self._statistics()
        self._batch_stats.append(stats)
        if self.log_statistics and logs is not None:
            logs.update(stats)

    def on_epoch_end(self, epoch, logs=None):
        if self.log_statistics and logs is not None and self._batch_stats:
            for key in self._batch_stats[0]:
                logs[key] = float(np.mean([s[key] for s in self._batch_stats]))

    def on_train_end(self, logs=None):
        control.detach_transforms(self.model, self)

    def get_config(self):
        return {
            "mode": self.mode,
            "max_norm": self.max_norm,
            "clip_value": self.clip_value,
            "clipping": self.clipping,
            "eps": self.eps,
            "exclude": list(self.exclude),
            "percentile": self.percentile,
            "history_size": self.history_size,
            "log_statistics": self.log_statistics,
        }
