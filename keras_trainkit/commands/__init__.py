"""Sub-commands of the ``trainkit`` console script, one module each."""
