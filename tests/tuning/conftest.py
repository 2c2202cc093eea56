"""Fixtures shared by the tuning tests."""

import matplotlib.figure
import pytest


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report saves, by file name."""
    saved = {}
    original = matplotlib.figure.Figure.savefig

    def record(figure, path, *args, **kwargs):
        saved[str(path).rsplit("/", 1)[-1]] = figure
        return original(figure, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    return saved
