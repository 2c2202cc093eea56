"""Diagnostics: learning-rate finder, initialization and gradient checks, plots."""

__all__: list[str] = []
