"""Small models, a batch counter and artifact probes shared by the tests."""

import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.interpreter import OpResolverType

L = keras.layers


def make_cnn(name="digits_cnn", seed=0, width=8):
    """A small digits CNN; `width` > 8 adds a second conv and a hidden dense
    layer."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    if width > 8:
        x = keras.layers.Conv2D(
            2 * width, 3, padding="same", activation="relu"
        )(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    if width > 8:
        x = keras.layers.Dense(4 * width, activation="relu")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@keras.saving.register_keras_serializable(package="keras_tflq_tests")
class Sine(keras.layers.Layer):
    """sin(x): an op TFLite has only a float kernel for."""

    def call(self, inputs):
        return keras.ops.sin(inputs)


class BatchCounter(keras.callbacks.Callback):
    """Counts training batches, to prove a failure came before the first one."""

    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


def tensor_dtypes(path):
    """{dtype name} of every tensor in a .tflite file."""
    interpreter = Interpreter(model_path=str(path))
    return {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}


def op_dtypes(path):
    """{op name: {(input dtype names, output dtype names)}} of a .tflite
    file, one pair of tuples per distinct signature (-1 inputs: None)."""
    interpreter = Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        ),
    )
    names = {
        t["index"]: np.dtype(t["dtype"]).name
        for t in interpreter.get_tensor_details()
    }
    found = {}
    for op in interpreter._get_ops_details():
        signature = (
            tuple(names.get(i) for i in op["inputs"]),
            tuple(names.get(i) for i in op["outputs"]),
        )
        found.setdefault(op["op_name"], set()).add(signature)
    return found


def io_dtypes(path):
    interpreter = Interpreter(model_path=str(path))
    return (
        [np.dtype(d["dtype"]).name for d in interpreter.get_input_details()],
        [np.dtype(d["dtype"]).name for d in interpreter.get_output_details()],
    )


def digits_cnn():
    """Conv+BN+ReLU, DepthwiseConv+BN+ReLU6, a residual Add, Dense."""
    inputs = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    shortcut = x
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.Add()([x, shortcut])
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    x = L.Dropout(0.2)(x)
    return keras.Model(inputs, L.Dense(10)(x), name="digits_cnn")


def compile_classifier(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
