"""The one seam to framework internals (Keras, TensorFlow, KerasTuner).

Every use of a non-public API (``keras.src``, ``keras_tuner.src``,
``tensorflow.python``, ``tensorflow.compiler``, ``tf.__internal__``, or a
private attribute of a framework object) lives here, one function per need,
named for what it does. Each function's docstring names the upstream file it
leans on and the versions it was tested with, and falls back to a public
behaviour where one exists. ``tests/test_compat_seam.py`` scans the package and
fails when any other module reaches into framework internals.
"""
