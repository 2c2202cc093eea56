"""The one seam to framework internals (Keras, TensorFlow, KerasTuner).

Only modules in this package may import ``keras.src``, ``keras_tuner.src``,
``tensorflow.python`` or touch private attributes of framework objects. Each
need is one function (or one small hook class) named for what it does, whose
docstring names the upstream file and the versions it was tested with.
"""
