"""Each supported layer pattern converts to int8 with no float left over."""

import keras
import numpy as np
import pytest
from qat_helpers import L
from qat_helpers import convert
from qat_helpers import op_names
from qat_helpers import run
from qat_helpers import tensor_types

import keras_tflq as tflq


def _conv(filters=4, **kwargs):
    return L.Conv2D(filters, 3, padding="same", **kwargs)


PATTERNS = {
    "conv_bn_relu": lambda x: L.ReLU()(L.BatchNormalization()(_conv()(x))),
    "conv_bias_bn_relu6": lambda x: L.Activation("relu6")(
        L.BatchNormalization()(_conv(use_bias=True)(x))
    ),
    "conv_builtin_relu": lambda x: _conv(activation="relu")(x),
    "conv_builtin_swish": lambda x: _conv(activation="swish")(x),
    "conv_sigmoid": lambda x: L.Activation("sigmoid")(_conv()(x)),
    "conv_tanh": lambda x: L.Activation("tanh")(_conv()(x)),
    "conv_hard_swish": lambda x: L.Activation("hard_swish")(_conv()(x)),
    "conv_hard_sigmoid": lambda x: L.Activation("hard_sigmoid")(_conv()(x)),
    "conv_builtin_hard_sigmoid": lambda x: _conv(activation="hard_sigmoid")(x),
    "bn_after_add": lambda x: L.BatchNormalization()(
        L.Add()([_conv()(x), _conv()(x)])
    ),
    "add_relu": lambda x: L.ReLU()(L.Add()([_conv()(x), _conv()(x)])),
    "concatenate": lambda x: L.Concatenate()(
        [L.ReLU()(_conv()(x)), _conv(6)(x), L.MaxPooling2D(1)(_conv(2)(x))]
    ),
    "multiply_squeeze_excite": lambda x: L.Multiply()(
        [
            _conv()(x),
            L.Dense(4, activation="sigmoid")(
                L.Reshape((1, 1, 1))(L.GlobalAveragePooling2D()(x))
            ),
        ]
    ),
    "rescaling_offset": lambda x: _conv()(L.Rescaling(1 / 127.5, -1.0)(x)),
    "normalization": lambda x: _conv()(
        L.Normalization(mean=0.5, variance=0.1)(x)
    ),
    "separable_bn_relu": lambda x: L.ReLU()(
        L.BatchNormalization()(L.SeparableConv2D(4, 3, padding="same")(x))
    ),
    "conv_transpose": lambda x: L.Conv2DTranspose(4, 3, strides=2)(x),
    "pad_pool_upsample_dropout": lambda x: L.Dropout(0.1)(
        L.UpSampling2D()(L.AveragePooling2D(2)(L.ZeroPadding2D()(_conv()(x))))
    ),
    "depthwise_multiplier_2": lambda x: L.DepthwiseConv2D(
        3, depth_multiplier=2
    )(x),
    "keras_ops_hard_sigmoid": lambda x: (
        L.ReLU(6.0)(_conv()(x) + 3.0) * (1.0 / 6.0)
    ),
    "dense_softmax": lambda x: L.Dense(5, activation="softmax")(L.Flatten()(x)),
    "average_maximum_subtract": lambda x: L.Subtract()(
        [
            L.Average()([_conv()(x), _conv()(x), _conv()(x)]),
            L.Maximum()([_conv()(x), _conv()(x)]),
        ]
    ),
    "gelu_leaky_prelu": lambda x: L.PReLU()(
        L.LeakyReLU()(L.Activation("gelu")(_conv()(x)))
    ),
    "permute_crop_global_max": lambda x: L.GlobalMaxPooling2D()(
        L.Cropping2D(1)(L.Permute((2, 1, 3))(_conv()(x)))
    ),
    "global_average_1d": lambda x: L.GlobalAveragePooling1D()(
        L.Reshape((64, 4))(_conv()(x))
    ),
    "dense_bn": lambda x: L.BatchNormalization()(L.Dense(5)(L.Flatten()(x))),
}


@pytest.mark.parametrize("build", PATTERNS.values(), ids=PATTERNS.keys())
def test_pattern_converts_to_int8_without_requantization(build):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    qat = tflq.quantize_model(keras.Model(inputs, build(inputs)))
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype="float32")
    qat(x, training=True)
    content = convert(qat)
    types = tensor_types(content)
    assert set(types.values()) <= {"int8", "int32"}, types
    ops = op_names(content)
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops, ops
    tflite_out, scale = run(content, x)
    keras_out = keras.ops.convert_to_numpy(qat(x))
    assert np.abs(tflite_out - keras_out).max() <= 3 * scale


def test_conv1d_bn_relu_converts_to_int8():
    inputs = keras.Input((16, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv1D(4, 3)(inputs)))
    qat = tflq.quantize_model(keras.Model(inputs, x))
    qat(
        np.random.default_rng(0).random((4, 16, 3), dtype="float32"),
        training=True,
    )
    assert set(tensor_types(convert(qat)).values()) <= {"int8", "int32"}


UNSUPPORTED = {
    "rms_normalization": lambda: L.RMSNormalization(),
    "elu": lambda: L.Activation("elu"),
    "relu_max_4": lambda: L.ReLU(max_value=4.0),
    "conv_with_elu": lambda: L.Conv2D(4, 1, activation="elu"),
}


@pytest.mark.parametrize("make", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_layers_tflite_runs_in_float_are_refused(make):
    # They would leave float ops (several TFLite ops, or no int8 kernel).
    inputs = keras.Input((8, 8, 4))
    layer = make()
    model = keras.Model(inputs, layer(inputs))
    with pytest.raises(ValueError, match=f"Received: layer='{layer.name}'"):
        tflq.quantize_model(model)
    kept = tflq.quantize_model(model, unsupported="float")
    assert type(kept.layers[-1]) is type(layer)


def _dense(x):
    return L.Dense(3)(x)


PATTERNS_3D = {
    "pad_crop_upsample_dropout_global_max_3d": lambda x: L.GlobalMaxPooling3D()(
        L.SpatialDropout3D(0.1)(
            L.UpSampling3D(2)(L.Cropping3D(1)(L.ZeroPadding3D(1)(_dense(x))))
        )
    ),
    "global_average_3d": lambda x: L.GlobalAveragePooling3D()(_dense(x)),
}


@pytest.mark.parametrize(
    "build", PATTERNS_3D.values(), ids=PATTERNS_3D.keys()
)
def test_3d_pattern_converts_to_int8_without_requantization(build):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 4, 2))
    qat = tflq.quantize_model(keras.Model(inputs, L.Dense(3)(build(inputs))))
    x = np.random.default_rng(0).random((8, 4, 4, 4, 2), dtype="float32")
    qat(x, training=True)
    content = convert(qat)
    assert set(tensor_types(content).values()) <= {"int8", "int32"}
    ops = op_names(content)
    assert "QUANTIZE" not in ops and "DEQUANTIZE" not in ops, ops
    tflite_out, scale = run(content, x)
    keras_out = keras.ops.convert_to_numpy(qat(x))
    assert np.abs(tflite_out - keras_out).max() <= 3 * scale


# TFLite's CONV_3D has no int8 kernel; MaxPool3D and AvgPool3D are no
# TFLite builtins (the converter refuses them).
UNSUPPORTED_3D = {
    "conv3d": lambda: L.Conv3D(2, 2),
    "max_pooling3d": lambda: L.MaxPooling3D(2),
    "average_pooling3d": lambda: L.AveragePooling3D(2),
}


@pytest.mark.parametrize(
    "make", UNSUPPORTED_3D.values(), ids=UNSUPPORTED_3D.keys()
)
def test_3d_layers_without_int8_kernels_are_refused(make):
    inputs = keras.Input((4, 4, 4, 2))
    layer = make()
    model = keras.Model(inputs, layer(_dense(inputs)))
    with pytest.raises(ValueError, match=f"Received: layer='{layer.name}'"):
        tflq.quantize_model(model)
