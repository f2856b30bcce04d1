"""Tiny Keras models and their TFLite conversions in every converter setting."""

import keras
import numpy as np
import tensorflow as tf

# Tests that compare with Keras draw their inputs from the calibration data,
# so int8 errors are rounding errors, not clipping outside calibrated ranges.
CALIBRATION_SEED = 1

# (mode, inference I/O type) pairs covering every converter setting.
MODES = {
    "float32": ("float32", None),
    "float16": ("float16", None),
    "dynamic": ("dynamic", None),
    "int8": ("int8", tf.int8),
    "int8_uint8_io": ("int8", tf.uint8),
    "int16x8": ("int16x8", None),
}


def _dense():
    inputs = keras.Input((32,), name="features")
    x = keras.layers.Dense(48, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))


def _conv():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))


def _two_inputs():
    # Named against the alphabet: the signature lists "alpha" first.
    zeta = keras.Input((6,), name="zeta")
    alpha = keras.Input((3,), name="alpha")
    x = keras.layers.Concatenate()([zeta * 2.0, alpha])
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    return keras.Model([zeta, alpha], keras.layers.Dense(4, name="out")(x))


def _many_outputs():
    # 12 outputs of distinct widths: "output_10" must follow "output_9".
    inputs = keras.Input((6,), name="x")
    x = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = [
        keras.layers.Dense(i + 1, name=f"head_{i}")(x) for i in range(12)
    ]
    return keras.Model(inputs, outputs)


def _fixed_batch():
    # A constant RESHAPE target: the interpreter cannot be resized.
    inputs = keras.Input(batch_shape=(1, 4, 4, 2), name="grid")
    x = keras.layers.Reshape((32,), name="reshape")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(x))


BUILDERS = {
    "dense": _dense,
    "conv": _conv,
    "two_inputs": _two_inputs,
    "many_outputs": _many_outputs,
    "fixed_batch": _fixed_batch,
}


def random_inputs(model, batch_size, seed=0):
    """One float32 array in [0, 1) per model input, in model input order."""
    rng = np.random.default_rng(seed)
    return [
        rng.random((batch_size,) + tuple(i.shape[1:]), dtype=np.float32)
        for i in model.inputs
    ]


def convert(model, mode_id):
    """Converts `model` with the converter settings of `MODES[mode_id]`."""
    mode, io_type = MODES[mode_id]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8"):

        samples = random_inputs(model, 64, seed=CALIBRATION_SEED)

        def representative_dataset():
            for i in range(64):
                yield [x[i : i + 1] for x in samples]

        converter.representative_dataset = representative_dataset
    if mode == "int8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    if mode == "int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return converter.convert()
