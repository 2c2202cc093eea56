"""A small search run as a separate process by the crash/resume tests.

Usage: python _search_script.py DIRECTORY LOG [isolate]
Appends one JSON line per trial start to LOG: the process id, the trial's
hyperparameter values and the epoch training starts from. Prints what the
search prints (a resumed trial says so).
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


class SlowEpochs(keras.callbacks.Callback):
    """Gives the test a wide window to kill the search mid-trial."""

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(0.4)


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
                 callbacks=[SlowEpochs()])


if __name__ == "__main__":
    main()
