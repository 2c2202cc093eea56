"""Shared test set-up: a quiet TensorFlow, two logical CPU devices, a per-session data cache.

The CPU is split into two logical devices before TensorFlow initializes, so
``tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])`` stands in for two GPUs.
Ops placed by default still run on ``/cpu:0``.
"""

import gc
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
LOGICAL_CPUS = ["/cpu:0", "/cpu:1"]
DURATIONS = Path(__file__).with_name("durations.json")  # scripts/test_durations.py
SECONDS_PER_UNMEASURED_TEST = 1.0  # a file not in DURATIONS: about the suite's mean


def pytest_configure(config):
    """Under ``--dist loadfile`` the files go to the workers in the order of
    :func:`pytest_collection_modifyitems`, not pytest-xdist's (most tests first)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """In an xdist worker, put the files longest first (their seconds in the last
    measured run, ``durations.json``), each file's tests in their own order: the
    workers take the next file as they finish one, so a long file never starts
    last while the other worker idles (by test count, the few-test crash-and-resume
    files of 20-60 s came last). Without xdist the order stays pytest's."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    by_file: dict[str, list] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)

    def cost(path):
        return seconds.get(path, SECONDS_PER_UNMEASURED_TEST * len(by_file[path]))

    items[:] = [item for path in sorted(by_file, key=cost, reverse=True) for item in by_file[path]]


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Point the data-set cache at a folder of this test session (unless CI set one)."""
    if "KERAS_TRAINKIT_CACHE" not in os.environ:
        os.environ["KERAS_TRAINKIT_CACHE"] = str(tmp_path_factory.mktemp("trainkit_cache"))
    yield


# A module's end collects once this many objects were frozen since the last collection.
NEW_OBJECTS_BETWEEN_COLLECTIONS = 100_000
_frozen_after_last_collection = 0


@pytest.fixture(scope="module", autouse=True)
def _collect_between_modules():
    """Release the heap frozen by ``_frozen_heap`` and collect it at a module's end,
    once 100,000 objects were frozen since the last collection.

    A full collection walks every object (about 2.4 million in a test worker, 1.3-1.6 s
    each), and most module ends had left little or nothing to free: collecting after
    every module took a fifth of the optimizer, schedule and callback tests' time.
    With the threshold those tests (``-n 2``) ran about 19 collections instead of 80
    and used 618 and 624 CPU-s against 703 and 685, two runs of each alternated.
    Cyclic garbage may wait a few modules longer than before: under 100,000 objects
    plus the last module's.
    """
    global _frozen_after_last_collection
    yield
    if gc.get_freeze_count() - _frozen_after_last_collection < NEW_OBJECTS_BETWEEN_COLLECTIONS:
        return
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _frozen_after_last_collection = gc.get_freeze_count()


@pytest.fixture(autouse=True)
def _frozen_heap():
    """Keep the cycle collector off the objects alive when a test starts.

    Keras's ``clear_session`` and KerasTuner's trial builder call ``gc.collect()``
    at every trial; with TensorFlow imported each call walks about a million
    objects (0.3 s, more in a long-lived test worker): a small Optuna search
    spent over half its time collecting. Objects alive when a test starts move to
    the permanent generation (``gc.freeze``), so those calls scan only the test's
    own objects; a module's end releases and collects them (when enough have
    accumulated: ``_collect_between_modules``). Reference counting still frees
    everything at once; only cyclic garbage waits for that collection. Nothing a
    test computes changes.
    """
    gc.freeze()
    yield


def mirrored_two_cpus():
    """A ``MirroredStrategy`` over the two logical CPU devices.

    Reduction goes through one device: two strategies with collective all-reduce
    in one process collide ("Shape mismatch in the collective instance") once
    their models differ.
    """
    return tf.distribute.MirroredStrategy(
        LOGICAL_CPUS, cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.fixture
def two_cpu_strategy():
    """A ``MirroredStrategy`` over the two logical CPU devices (see ``mirrored_two_cpus``)."""
    return mirrored_two_cpus()
