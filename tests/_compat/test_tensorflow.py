"""``_compat.tensorflow.gradient_tape_recording`` against TensorFlow's own tapes."""

import tensorflow as tf

from keras_trainkit._compat.tensorflow import gradient_tape_recording


def test_it_tells_a_taped_computation_from_an_untaped_one_eagerly_and_in_a_trace():
    assert gradient_tape_recording() is False
    with tf.GradientTape() as tape:
        assert gradient_tape_recording() is True
        with tape.stop_recording():
            assert gradient_tape_recording() is False
    seen = []

    @tf.function
    def step(taped):
        if taped:
            with tf.GradientTape():
                seen.append(gradient_tape_recording())
        else:
            seen.append(gradient_tape_recording())
        return tf.constant(0)

    step(True)
    step(False)
    assert seen == [True, False]
