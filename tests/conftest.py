"""Shared test set-up: a quiet TensorFlow and a per-session data cache."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Point the data-set cache at a folder of this test session (unless CI set one)."""
    if "KERAS_TRAINKIT_CACHE" not in os.environ:
        os.environ["KERAS_TRAINKIT_CACHE"] = str(tmp_path_factory.mktemp("trainkit_cache"))
    yield
