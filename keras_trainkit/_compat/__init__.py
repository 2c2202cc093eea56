"""The one seam to Keras, TensorFlow and KerasTuner internals and version differences.

Private: one module per framework, one function per need. Each function's
docstring names the upstream file it mirrors or reaches into and the versions
it was tested with.
"""
