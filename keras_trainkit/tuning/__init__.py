"""KerasTuner search spaces, pruning and trial runners for whole training recipes."""

__all__: list[str] = []
