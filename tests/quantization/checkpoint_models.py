"""The small QAT model the checkpoint tests save and restore.

`tests/quantization/data/qat_ranges_v0.keras` was saved by
`save_fixture()` with the code before the quantizer ranges were tracked for
`tf.train.Checkpoint` (commit 963b7c1); `qat_ranges_v0.npz` holds its
input batch and predictions. A `.keras` file saved then must keep loading.
"""

import keras
import numpy as np

import keras_tflq as tflq

L = keras.layers


def qat_model(seed=0):
    """A QAT model with every kind of quantizing layer: a `QuantizeWrapper`
    (Dense, ReLU, the input), a folded Conv2D + BatchNormalization, a
    BatchNormalization run as one int8 op, and a nested Sequential model."""
    keras.utils.set_random_seed(seed)
    head = keras.Sequential(
        [keras.Input((64,)), L.Dense(8, activation="relu"), L.Dense(3)],
        name="head",
    )
    inputs = keras.Input((4, 4, 1))
    x = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.BatchNormalization()(L.Add()([x, x]))
    x = L.Flatten()(x)
    return tflq.quantize_model(keras.Model(inputs, head(x)))


def batch(seed=0):
    return np.random.default_rng(seed).normal(size=(16, 4, 4, 1)).astype(
        "float32"
    ) * 3.0


def train(model, seed=0):
    """Two short `fit()`s worth of range updates: ranges move away from
    their initial values."""
    x = batch(seed)
    y = np.random.default_rng(seed + 1).integers(0, 3, size=(16,))
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    return model


def save_fixture(folder):
    """Writes `qat_ranges_v0.keras` and `qat_ranges_v0.npz` to `folder`."""
    model = train(qat_model())
    x = batch(1)
    model.save(f"{folder}/qat_ranges_v0.keras")
    np.savez(
        f"{folder}/qat_ranges_v0.npz",
        x=x,
        y=model.predict(x, verbose=0),
        **{
            f"var{i}": v.numpy()
            for i, v in enumerate(model.non_trainable_variables)
        },
        paths=np.array([v.path for v in model.non_trainable_variables]),
    )
