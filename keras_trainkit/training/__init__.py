"""The ``GradientTape`` training loop (``Trainer``) and its step hooks."""

__all__: list[str] = []
