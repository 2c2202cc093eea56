"""The Trainer's loops over data: one ``fit`` epoch, ``evaluate`` and ``predict``.

:class:`TrainerLoops` is a base class of :class:`~keras_trainkit.training.Trainer`
(as Keras's backend trainers hold ``fit``/``evaluate``/``predict`` apart from
the model's step hooks): these methods drive the Trainer's parts (its compiled
functions, step loop, NaN policy, checkpointer, evaluation weights) over the
batches, and read nothing the Trainer does not set up in ``__init__`` and
``fit``.
"""

from __future__ import annotations

from keras_trainkit._compat.keras import metrics_in_order
from keras_trainkit.training import _data, evaluation
from keras_trainkit.training.epoch_plan import prepare_inputs
from keras_trainkit.training.setup import callback_list, check_verbose
from keras_trainkit.utils.validation import check_positive


class TrainerLoops:
    """``Trainer``'s epoch, evaluation and prediction loops (see the module docstring)."""

    def _fit_epoch(self, epoch, first_step, plan, callbacks, checkpointer, every, validation):
        """One epoch: its batches, the NaN policy, validation, the epoch-end checkpoint."""
        cursor = checkpointer.cursor if checkpointer is not None else None
        seed = checkpointer.seed if checkpointer is not None else None
        iterator, steps, changed = plan.epoch(epoch, first_step, cursor=cursor, seed=seed)
        if changed:
            callbacks.set_params({**callbacks.params, "steps": steps})
        self.model.reset_metrics()
        callbacks.on_epoch_begin(epoch)

        def after_call(step, n):
            if checkpointer is not None and every and step // every > (step - n) // every and (
                    steps is None or step < steps):
                checkpointer.save(epoch, step, plan.position)

        logs, steps_done = self._loop.run(
            self._functions.bound_train(iterator), steps, begin=callbacks.on_train_batch_begin,
            end=lambda step, payload: callbacks.on_train_batch_end(step, payload), first_step=first_step,
            after_call=after_call, should_stop=lambda: self.model.stop_training, count=plan.counts_steps)
        plan.end_epoch(steps_done, stopped=self.model.stop_training)
        logs = evaluation.pass_logs(self.model, logs)
        self.non_finite.end_epoch(epoch, self.model)
        # A transform that stopped training in the graph (SkipNonFinite under XLA,
        # where compiled code cannot raise) raises here at the latest.
        self._chain.raise_if_stopped()
        if validation is not None:  # as in `fit`, also in an epoch that set `stop_training`
            dataset, steps, count = validation
            with self.evaluation_weights():
                val_logs, _ = self._evaluate_prepared(dataset, steps, callbacks, count=count)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callbacks.on_epoch_end(epoch, logs)
        if checkpointer is not None:
            checkpointer.save(epoch + 1, 0, plan.position)
        return logs

    def evaluate(self, x, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 callbacks=None, return_dict=False, steps=None):
        """Loss and metrics over ``x`` at the evaluation weights (:meth:`evaluation_weights`), as
        ``model.evaluate``; ``steps``: the batches to evaluate (``None``: all; required for an
        infinite dataset)."""
        verbose = check_verbose(verbose)
        _data.check_input_kind(x, "x")
        _data.check_targets(self.model, x, y, "x", self._loss_reads_targets())
        dataset, pass_steps = prepare_inputs(x, y, sample_weight, batch_size, self.model, shuffle=False,
                                             seed=self.seed)
        run_steps = evaluation.steps_to_run(dataset, pass_steps, steps, name="x", steps_name="steps")
        self._ensure_built(dataset)
        callbacks = callback_list(callbacks, self.model, verbose=verbose, epochs=1, steps=run_steps,
                                  history=False)
        with self.evaluation_weights():
            logs, done = self._evaluate_prepared(dataset, run_steps, callbacks, count=steps is not None)
        evaluation.warn_if_ran_out("steps", steps, done)
        return logs if return_dict else metrics_in_order(self.model, logs)

    def _evaluate_prepared(self, dataset, steps, callbacks, count=False):
        """Run the test function over ``steps`` batches of a prepared ``dataset``; returns
        ``(logs, steps done)``."""
        return evaluation.evaluate_batches(self.model, self.strategy, self._loop, self._functions.test(),
                                           dataset, steps, callbacks, count=count)

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Model outputs over ``x`` (arrays or a dataset) as NumPy arrays, at the evaluation weights,
        as ``model.predict``: ``steps`` batches (``None``: all; required for an infinite dataset),
        ``callbacks``' ``on_predict_*`` hooks."""
        verbose = check_verbose(verbose)
        if batch_size is not None:
            check_positive("batch_size", batch_size, integer=True)
        _data.check_input_kind(x, "x")
        if _data.is_dataset(x):
            dataset, pass_steps = x, _data.pass_batches(x)
        else:
            dataset, pass_steps = prepare_inputs(x, None, None, batch_size, self.model, shuffle=False,
                                                 seed=self.seed)
        # without steps, one pass: its length where known (the progress bar's target, as in
        # `model.predict`), else all the batches there are (counted as they come)
        run_steps = evaluation.steps_to_run(dataset, pass_steps, steps, name="x", steps_name="steps")
        callbacks = callback_list(callbacks, self.model, verbose=verbose, epochs=1, steps=run_steps,
                                  history=False)
        with self.evaluation_weights():
            outputs, done = evaluation.predict_batches(self.strategy, self._loop, self._functions.predict(),
                                                       dataset, run_steps, callbacks)
        evaluation.warn_if_ran_out("steps", steps, done)
        return outputs
