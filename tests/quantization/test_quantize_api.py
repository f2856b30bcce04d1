"""annotate / apply / quantize_model: what they build, what they refuse."""

import keras
import numpy as np
import pytest
from qat_helpers import L
from qat_helpers import convert
from qat_helpers import digits_cnn
from qat_helpers import op_names
from qat_helpers import tensor_types

import keras_tflq as tflq
from keras_tflq.quantization import is_quantized_model
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper


def _x(shape=(8, 8, 8, 1)):
    return np.random.default_rng(0).random(shape, dtype="float32")


class Unsupported(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


def test_annotated_layer_behaves_like_the_original():
    dense = L.Dense(3)
    annotated = tflq.quantize_annotate_layer(dense)
    x = _x((4, 5))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(annotated(x)),
        keras.ops.convert_to_numpy(dense(x)),
    )
    assert isinstance(annotated, QuantizeAnnotate)


def test_quantize_apply_quantizes_only_annotated_layers():
    inputs = keras.Input((6,))
    x = tflq.quantize_annotate_layer(L.Dense(4, name="first"))(inputs)
    outputs = L.Dense(2, name="second")(x)
    qat = tflq.quantize_apply(keras.Model(inputs, outputs))
    kinds = {layer.name: type(layer).__name__ for layer in qat.layers}
    assert kinds["quant_first"] == "QuantizeWrapper"
    assert kinds["second"] == "Dense"


def test_quantize_model_folds_bn_and_carries_float_weights():
    model = digits_cnn()
    x = _x()
    qat = tflq.quantize_model(model)
    assert any(isinstance(layer, ConvBatchNormFold) for layer in qat.layers)
    assert not any(
        isinstance(layer, L.BatchNormalization) for layer in qat.layers
    )
    np.testing.assert_array_equal(
        qat.layers[-1].layer.kernel.numpy(), model.layers[-1].kernel.numpy()
    )
    # A new model: training it leaves the original untouched.
    before = model.get_weights()
    qat.compile("adam", "mse")
    qat.fit(x, np.zeros((8, 10)), verbose=0)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_quantize_model_on_sequential_and_nested_models():
    block = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            L.Conv2D(4, 3, padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
        ],
        name="block",
    )
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            L.Conv2D(4, 3, padding="same"),
            block,
            L.GlobalAveragePooling2D(),
            L.Dense(3),
        ]
    )
    qat = tflq.quantize_model(model)
    nested = [layer for layer in qat.layers if isinstance(layer, keras.Model)]
    assert len(nested) == 1 and is_quantized_model(nested[0])
    qat(_x(), training=True)
    content = convert(qat)
    assert set(tensor_types(content).values()) <= {"int8", "int32"}
    assert "DEQUANTIZE" not in op_names(content)


def test_per_channel_false_gives_per_tensor_conv_weights():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, L.Conv2D(4, 3)(inputs))
    for per_channel, shape in ((True, (4,)), (False, ())):
        qat = tflq.quantize_model(model, per_channel=per_channel)
        wrapper = qat.layers[-1]
        ranges = [v for v in wrapper.variables if v.path.endswith("kernel_max")]
        assert tuple(ranges[0].shape) == shape


def test_is_quantized_model():
    model = digits_cnn()
    assert not is_quantized_model(model)
    assert is_quantized_model(tflq.quantize_model(model))
    outer = keras.Sequential(
        [keras.Input((8, 8, 1)), tflq.quantize_model(model)]
    )
    assert is_quantized_model(outer)


def _model_with_unsupported_layer():
    inputs = keras.Input((4,))
    return keras.Model(
        inputs, Unsupported(name="doubler")(L.Dense(4)(inputs))
    )


ENTRY_POINT_ERRORS = {
    # Nothing was annotated by the user: the error says what was checked.
    "quantize_model": (
        lambda: tflq.quantize_model(_model_with_unsupported_layer()),
        r"Expected every layer of the model to be supported by the default "
        r"quantization scheme \(`quantize_model` quantizes them all\)\. "
        r"Received: layer='doubler' of type Unsupported\. "
        r'Pass `unsupported="float"`.* then `quantize_apply`',
    ),
    "quantize_annotate_model": (
        lambda: tflq.quantize_annotate_model(_model_with_unsupported_layer()),
        r"Expected every layer of the model to be supported .*"
        r"\(`quantize_annotate_model` annotates them all\)\. "
        r"Received: layer='doubler' of type Unsupported\. "
        r'Pass `unsupported="float"` to leave such layers unannotated',
    ),
    "quantize_annotate_layer": (
        lambda: tflq.quantize_annotate_layer(_model_with_unsupported_layer()),
        r"Expected every layer of a model passed to "
        r"`quantize_annotate_layer` to be supported .* "
        r"Received: layer='doubler' of type Unsupported\. "
        r"Use `quantize_annotate_layer` on the supported layers",
    ),
    "quantize_apply": (
        lambda: tflq.quantize_apply(
            keras.Sequential(
                [
                    keras.Input((4,)),
                    tflq.quantize_annotate_layer(Unsupported(name="doubler")),
                ]
            )
        ),
        r"Expected every annotated layer to be supported by the default "
        r"quantization scheme or to carry a `quantize_config`\. "
        r"Received: layer='doubler' of type Unsupported",
    ),
}


@pytest.mark.parametrize(
    "call, match", ENTRY_POINT_ERRORS.values(), ids=ENTRY_POINT_ERRORS.keys()
)
def test_unsupported_layer_error_is_worded_for_the_entry_point(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unsupported_layer_left_in_float_when_allowed():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Unsupported(name="doubler")(L.Dense(4)(inputs)))
    qat = tflq.quantize_model(model, unsupported="float")
    assert type(qat.get_layer("doubler")) is Unsupported
    assert isinstance(qat.layers[2], QuantizeWrapper)


def test_unsupported_annotated_without_config_rejected_by_apply():
    inputs = keras.Input((4,))
    outputs = tflq.quantize_annotate_layer(Unsupported(name="doubler"))(inputs)
    with pytest.raises(ValueError, match="Received: layer='doubler'"):
        tflq.quantize_apply(keras.Model(inputs, outputs))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(per_channel="yes"),
            "Expected `per_channel` to be True or False. "
            "Received: per_channel='yes'",
        ),
        (
            dict(activation_bits=4),
            r"Expected `activation_bits` to be one of \(8, 16\). "
            "Received: activation_bits=4",
        ),
        (
            dict(unsupported="skip"),
            r"Expected `unsupported` to be one of .* "
            "Received: unsupported='skip'",
        ),
    ],
    ids=["per_channel", "activation_bits", "unsupported"],
)
def test_bad_options_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tflq.quantize_model(digits_cnn(), **kwargs)


def test_non_model_rejected():
    with pytest.raises(
        ValueError,
        match="Expected `model` to be a keras.Model instance. Received: model=",
    ):
        tflq.quantize_model(L.Dense(3))


def test_unbuilt_sequential_rejected():
    with pytest.raises(
        ValueError, match="Expected a Sequential model with a known input shape"
    ):
        tflq.quantize_model(keras.Sequential([L.Dense(3)]))


def test_annotating_twice_rejected():
    annotated = tflq.quantize_annotate_layer(L.Dense(3))
    with pytest.raises(
        ValueError, match="Expected a layer that is not already annotated"
    ):
        tflq.quantize_annotate_layer(annotated)


def test_bad_quantize_config_rejected():
    with pytest.raises(
        ValueError,
        match="Expected `quantize_config` to be a keras_tflq.QuantizeConfig "
        "instance or None. Received: quantize_config='int8'",
    ):
        tflq.quantize_annotate_layer(L.Dense(3), "int8")


def test_wrapper_rejects_non_config():
    with pytest.raises(
        ValueError,
        match="Expected `quantize_config` to be a keras_tflq.QuantizeConfig",
    ):
        QuantizeWrapper(L.Dense(3), None)


class _SubclassedModel(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(3)

    def call(self, x):
        return self.dense(x)


@keras.saving.register_keras_serializable(package="keras_tflq_tests")
class _OutputConfig(tflq.QuantizeConfig):
    """Quantizes only the output of a custom layer."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            tflq.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


def test_subclassed_model_rejected_with_guidance():
    model = _SubclassedModel(name="sub")
    model(np.ones((1, 4)))
    with pytest.raises(
        ValueError,
        match=r"Expected a Functional or Sequential model.* "
        r"Received: model='sub' of type _SubclassedModel",
    ):
        tflq.quantize_model(model)


def test_custom_layer_quantized_through_its_config(tmp_path):
    inputs = keras.Input((4,))
    x = tflq.quantize_annotate_layer(L.Dense(4))(inputs)
    x = tflq.quantize_annotate_layer(
        Unsupported(name="doubler"), _OutputConfig()
    )(x)
    qat = tflq.quantize_apply(keras.Model(inputs, x))
    data = _x((16, 4))
    qat(data, training=True)
    content = convert(qat)
    assert set(tensor_types(content).values()) <= {"int8", "int32"}
    qat.save(tmp_path / "custom.keras")
    reloaded = keras.saving.load_model(
        tmp_path / "custom.keras", custom_objects={"Unsupported": Unsupported}
    )
    np.testing.assert_array_equal(
        reloaded.predict(data, verbose=0), qat.predict(data, verbose=0)
    )


def test_multiple_inputs_outputs_and_a_shared_layer(tmp_path):
    a = keras.Input((8, 8, 1), name="a")
    b = keras.Input((8, 8, 1), name="b")
    shared = L.Conv2D(4, 3, padding="same")
    x = L.Add()([shared(a), shared(b)])
    head1 = L.Dense(3)(L.Flatten()(x))
    head2 = L.GlobalAveragePooling2D()(L.ReLU()(x))
    qat = tflq.quantize_model(keras.Model([a, b], [head1, head2]))
    data = [_x(), _x()]
    qat(data, training=True)
    content = convert(qat)
    assert set(tensor_types(content).values()) <= {"int8", "int32"}
    assert op_names(content).count("CONV_2D") == 2
    qat.save(tmp_path / "multi.keras")
    reloaded = keras.saving.load_model(tmp_path / "multi.keras")
    for got, want in zip(
        reloaded.predict(data, verbose=0),
        qat.predict(data, verbose=0),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
