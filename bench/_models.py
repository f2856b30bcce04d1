"""The digits models the benchmarks build (shared by accuracy_budget.py and
sequence_models.py, so each is defined once).

* `digits_mlp()`: Dense(32) x3 -> Dense(10, softmax) on the 64 pixels.
* `digits_cnn()`: Conv2D(16) -> Conv2D(32) -> MaxPooling -> Dense(10,
  softmax) on the 8x8 image.
* `add_outlier(layer, next_layer)`: one unit of `layer` x500 and its
  weights in `next_layer` /500, the same function with an outlier unit
  (the models of tests/conversion/test_precision_search.py).
* `sequence_model(kind)`: the recurrent, attention and
  Embedding models of the sequence benchmark (logits, compiled).
* `digits_patches(images)`: 8x8 digits as the ViT's 4 patches of 4x4.
"""

import keras

L = keras.layers

OUTLIER_SCALE = 500.0

SEQUENCE_KINDS = (
    "lstm",
    "gru",
    "simple_rnn",
    "bidirectional_lstm",
    "vit",
    "embedding",
)


def digits_mlp(name="digits_mlp"):
    """The digits MLP (64 pixels in [0, 1]); `outlier` is its second
    hidden layer, the one `add_outlier` scales."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((64,), name="pixels"),
            L.Dense(32, activation="relu", name="dense_in"),
            L.Dense(32, activation="relu", name="outlier"),
            L.Dense(32, activation="relu", name="dense_mid"),
            L.Dense(10, activation="softmax", name="probs"),
        ],
        name=name,
    )


def digits_cnn(name="digits_cnn"):
    """The digits CNN (8x8x1 images in [0, 1])."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(16, 3, padding="same", activation="relu", name="conv_a")(
        inputs
    )
    h = L.Conv2D(32, 3, padding="same", activation="relu", name="conv_b")(h)
    h = L.MaxPooling2D(name="pool")(h)
    h = L.Flatten(name="flatten")(h)
    outputs = L.Dense(10, activation="softmax", name="probs")(h)
    return keras.Model(inputs, outputs, name=name)


def add_outlier(layer, next_layer, scale=OUTLIER_SCALE):
    """Scales unit 0 of `layer` by `scale` and its weights in `next_layer`
    by `1 / scale`: the same function (ReLU is positively homogeneous),
    one unit `scale` times larger than the rest."""
    kernel, bias = layer.get_weights()
    kernel[..., 0] *= scale
    bias[0] *= scale
    layer.set_weights([kernel, bias])
    kernel, bias = next_layer.get_weights()
    if kernel.ndim == 2:
        kernel[0, :] /= scale
    else:
        kernel[..., 0, :] /= scale
    next_layer.set_weights([kernel, bias])


def sequence_model(kind):
    """A sequence or attention model of `SEQUENCE_KINDS`, compiled (Adam
    1e-2, 3e-3 for the ViT; logits). `keras_tflq.quantize_model` quantizes
    every layer of it with the default scheme, no annotation needed."""
    keras.utils.set_random_seed(0)
    if kind == "embedding":
        inputs = keras.Input((64,), dtype="int32", name="pixels")
        x = L.Flatten()(L.Embedding(17, 8)(inputs))
        x = L.Dense(32, activation="relu")(x)
    elif kind == "vit":
        inputs = keras.Input((4, 16), name="patches")
        x = L.Dense(32)(inputs)
        attended = L.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
        x = L.LayerNormalization()(x + attended)
        hidden = L.Dense(64, activation="gelu")(x)
        x = L.LayerNormalization()(x + L.Dense(32)(hidden))
        x = L.Flatten()(x)
    else:
        inputs = keras.Input((8, 8), name="rows")
        layer = {
            "lstm": lambda: L.LSTM(32),
            "gru": lambda: L.GRU(32),
            "simple_rnn": lambda: L.SimpleRNN(32),
            "bidirectional_lstm": lambda: L.Bidirectional(L.LSTM(16)),
        }[kind]()
        x = layer(inputs)
    outputs = L.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name=kind)
    model.compile(
        keras.optimizers.Adam(3e-3 if kind == "vit" else 1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def digits_patches(images):
    """`(n, 8, 8)` images as `(n, 4, 16)`: 4 patches of 4x4, row-major, the
    tokens of the `"vit"` model."""
    patches = images.reshape(-1, 2, 4, 2, 4).transpose(0, 1, 3, 2, 4)
    return patches.reshape(-1, 4, 16)
