"""A small search run as a separate process by the crash/resume tests.

Usage: python _search_script.py DIRECTORY LOG [isolate]
Appends one JSON line per trial start to LOG: the process id, the trial's
hyperparameter values and the epoch training starts from. Prints what the
search prints (a resumed trial says so).

With ``HOLD_AT=TRIAL,EPOCH`` in the environment the search stops and waits (for
the test's SIGKILL) when the TRIAL-th trial of this run is about to train epoch
EPOCH: every callback of the epoch before has run, so its checkpoint is on disk
(EPOCH 0: the trial has started, before any checkpoint). The kill then lands at
that point on a busy machine as on an idle one.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_trainkit import datasets, tuning  # noqa: E402


class LoggingRecipe(tuning.RecipeHyperModel):
    def __init__(self, log_path, **kwargs):
        super().__init__(**kwargs)
        self.log_path = log_path

    def fit(self, hp, model, *args, **kwargs):
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps({"run": os.environ["SEARCH_RUN"], "pid": os.getpid(),
                                     "values": sorted((k, str(v)) for k, v in hp.values.items()),
                                     "initial_epoch": kwargs.get("initial_epoch", 0)}) + "\n")
        return super().fit(hp, model, *args, **kwargs)


class HoldForKill(keras.callbacks.Callback):
    """Waits at ``HOLD_AT`` (see the module docstring) until the test kills the search."""

    def __init__(self, log_path):
        super().__init__()
        self.log_path = log_path

    def on_epoch_begin(self, epoch, logs=None):
        hold_at = os.environ.get("HOLD_AT")
        if not hold_at:
            return
        trial_index, hold_epoch = (int(part) for part in hold_at.split(","))
        with open(self.log_path) as handle:
            starts = [json.loads(line) for line in handle]
        this_run = [s for s in starts if s["run"] == os.environ["SEARCH_RUN"]]
        if len(this_run) == trial_index + 1 and epoch == hold_epoch:
            time.sleep(600)


def main():
    # identifies this search run, also inside isolated trial processes
    os.environ["SEARCH_RUN"] = str(os.getpid())
    directory, log_path = sys.argv[1], sys.argv[2]
    isolate = len(sys.argv) > 3 and sys.argv[3] == "isolate"
    (x, y), _ = datasets.load_mnist1d()
    recipe = LoggingRecipe(
        log_path, input_shape=(40,), num_classes=10,
        architecture=tuning.MLPSpace(depth=(1, 1), widths=(16, 32)),
        training=tuning.TrainingSpace(batch_sizes=(128,), epochs=5, clipping=False))
    tuner = tuning.RandomSearch(recipe, max_trials=3, seed=7, directory=directory,
                                project_name="resume", isolate_trials=isolate)
    tuner.search(x[:512], y[:512], validation_data=(x[3000:3256], y[3000:3256]),
                 callbacks=[HoldForKill(log_path)])


if __name__ == "__main__":
    main()
