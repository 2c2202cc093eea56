"""One worker of a two-process MultiWorkerMirroredStrategy run (see test_distribution.py).

Usage: _multiworker_script.py PORT0 PORT1 INDEX OUT.npz
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
port0, port1, index, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{port0}", f"127.0.0.1:{port1}"]},
    "task": {"type": "worker", "index": index},
})

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_trainkit.training import Trainer  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 5)).astype("float32")
y = rng.integers(0, 3, size=64)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).with_options(options)
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3)])
    trainer = Trainer(model, keras.optimizers.Adam(0.05),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      strategy=strategy, steps_per_execution=2)
trainer.fit(data, epochs=2, verbose=0)
np.savez(out, *model.get_weights())
print("done", strategy.num_replicas_in_sync)
