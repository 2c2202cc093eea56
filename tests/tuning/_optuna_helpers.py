"""A fast hypermodel for the Optuna tests: a one-weight model trained a few steps per
epoch, whose objective ``score`` is a known function of the hyperparameters and the
epoch (set in the logs by a callback), so pruning and fronts are predictable.

Run as a script it is one worker of a search: ``python _optuna_helpers.py DIR LOG
STORAGE MAX_TRIALS [SEED] [WORKERS [GO]]``; it appends one JSON line per trial start
to LOG. With WORKERS, it builds its tuner and then waits until WORKERS workers of DIR
have, so that on a loaded machine a worker slow to start still gets a trial of a short
search; with GO too, it then waits until the file GO exists (the test creates it once
a chosen worker has started its trial, which the others then cannot take, and which
they do not know as a trial of their own: they read the search folder before it).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_tuner  # noqa: E402
import numpy as np  # noqa: E402

X = np.linspace(-1, 1, 16, dtype="float32").reshape(-1, 1)
Y = 2 * X


class Score(keras.callbacks.Callback):
    """Puts ``score = quality * (epoch + 1)`` in the epoch's logs (divided by it if falling)."""

    def __init__(self, quality, sleep=0.0, falling=False):
        super().__init__()
        self.quality = quality
        self.sleep = sleep
        self.falling = falling

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.sleep)
        factor = 1 / (epoch + 1) if self.falling else epoch + 1
        logs["score"] = float(self.quality * factor)


class Synthetic(keras_tuner.HyperModel):
    """``x`` in [0, 1] (the score's quality), ``width`` (the parameter count), and an
    optimizer choice with per-optimizer conditional learning rates."""

    def __init__(self, epochs=3, sleep=0.0, log_path=None, falling=False):
        super().__init__()
        self.falling = falling
        self.epochs = epochs
        self.sleep = sleep
        self.log_path = log_path

    def build(self, hp):
        hp.Float("x", 0.0, 1.0)
        width = hp.Choice("width", [1, 4, 16])
        optimizer = hp.Choice("optimizer", ["adam", "sgd"])
        with hp.conditional_scope("optimizer", "adam"):
            hp.Float("adam_lr", 1e-3, 1e-1, sampling="log")
        with hp.conditional_scope("optimizer", "sgd"):
            hp.Float("sgd_lr", 1e-3, 1e-1, sampling="log")
            hp.Boolean("sgd_nesterov")
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(width),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=optimizer, loss="mse", run_eagerly=True)
        return model

    def fit(self, hp, model, *args, **kwargs):
        if self.log_path:
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps({"pid": os.getpid(), "values": hp.values,
                                         "initial_epoch": kwargs.get("initial_epoch", 0)})
                             + "\n")
        score = Score(hp.get("x"), self.sleep, self.falling)
        kwargs["callbacks"] = [score, *kwargs.get("callbacks", [])]
        kwargs.pop("epochs", None)
        kwargs.setdefault("verbose", 0)
        return model.fit(X, Y, epochs=self.epochs, **kwargs)


class LazyBranch(Synthetic):
    """``Synthetic``'s model and a hyperparameter registered only inside a branch that is not
    the default one, as the recipe spaces register theirs (the first build, at the defaults,
    does not reach it)."""

    def build(self, hp):
        model = super().build(hp)
        if hp.Choice("branch", ["plain", "scaled"]) == "scaled":
            with hp.conditional_scope("branch", "scaled"):
                hp.Float("scale", 0.5, 2.0)
        return model


def _wait_until(condition, failure, timeout=600):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise SystemExit(failure())
        time.sleep(0.1)


def wait_for_workers(directory, workers, go=None):
    """Marks this worker (its tuner built) ready in ``DIR/ready``, waits until
    ``workers`` are, then (with ``go``) until that file exists."""
    ready = os.path.join(directory, "ready")
    os.makedirs(ready, exist_ok=True)
    open(os.path.join(ready, str(os.getpid())), "w").close()
    _wait_until(lambda: len(os.listdir(ready)) >= workers,
                lambda: f"only {len(os.listdir(ready))} of {workers} workers became ready")
    if go is not None:
        _wait_until(lambda: os.path.exists(go), lambda: f"{go} was never created")


def main():
    from keras_trainkit import tuning

    directory, log_path, storage, max_trials = sys.argv[1:5]
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else None
    storage = None if storage == "default" else storage
    tuner = tuning.OptunaSearch(
        Synthetic(epochs=4, sleep=0.5, log_path=log_path),
        objective=keras_tuner.Objective("score", "max"), max_trials=int(max_trials),
        storage=storage, seed=seed, heartbeat_interval=1, grace_period=4,
        directory=directory, project_name="search")
    if len(sys.argv) > 6:
        wait_for_workers(directory, int(sys.argv[6]), *sys.argv[7:8])
    tuner.search()


if __name__ == "__main__":
    main()
