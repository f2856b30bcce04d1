"""QAT of layers annotated inside subclassed models (quantized in place)."""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq.conversion.converter import convert_model
from keras_tflq.quantization import is_quantized_model
from keras_tflq.quantization.default_scheme.channel_affine import (
    QuantizeChannelAffine,
)
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper
from keras_tflq.runtime.inspection import inspect_tflite

L = keras.layers
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@keras.saving.register_keras_serializable(package="test_subclassed")
class DigitsNet(keras.Model):
    """The model of the issue: annotated Conv2D and Dense, plain Flatten."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = tflq.quantize_annotate_layer(
            L.Conv2D(8, 3, activation="relu")
        )
        self.flat = L.Flatten()
        self.head = tflq.quantize_annotate_layer(L.Dense(10))

    def call(self, x):
        return self.head(self.flat(self.conv(x)))


class _Blocks(keras.Model):
    """Annotated layers in a list, a nested Functional model and a
    BatchNormalization not after a convolution."""

    def __init__(self, last=None, **kwargs):
        super().__init__(**kwargs)
        inputs = keras.Input((6, 6, 4))
        self.stem = keras.Model(
            inputs, tflq.quantize_annotate_layer(L.Conv2D(4, 1))(inputs)
        )
        self.blocks = [
            tflq.quantize_annotate_layer(L.BatchNormalization()),
            tflq.quantize_annotate_layer(L.ReLU()),
        ]
        self.flat = L.Flatten()
        self.last = last or tflq.quantize_annotate_layer(L.Dense(3))

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.last(self.flat(x))


def _annotations(model):
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, QuantizeAnnotate)
    ]


def _agreement(keras_model, content, x):
    litert = tflq.LiteRTModel(model_content=content).predict(x)
    expected = keras_model.predict(x, verbose=0)
    return np.mean(litert.argmax(-1) == expected.argmax(-1))


def _calibration(x, count=64):
    return lambda: ([x[i : i + 1]] for i in range(count))


def _integer_only(content):
    return set(inspect_tflite(content)["tensor_dtypes"]) <= {"int8", "int32"}


@pytest.fixture(scope="module")
def trained_net(digits_split):
    """DigitsNet trained in float, quantized in place and fine-tuned."""
    x_train, y_train, _, _ = digits_split
    keras.utils.set_random_seed(0)
    net = DigitsNet()
    net(x_train[:1])
    net.compile(keras.optimizers.Adam(3e-3), LOSS, metrics=["accuracy"])
    net.fit(x_train, y_train, epochs=8, batch_size=32, verbose=0)
    kernel = net.conv.layer.kernel
    float_kernel = kernel.numpy()
    quantized = tflq.quantize_apply(net)
    returned_same = quantized is net
    kernel_kept = net.conv.layer.kernel is kernel and np.array_equal(
        kernel.numpy(), float_kernel
    )
    net.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    return net, returned_same, kernel_kept


def _functional(net, shape=(8, 8, 1)):
    inputs = keras.Input(shape)
    return keras.Model(inputs, net(inputs))


def test_quantize_apply_activates_annotations_in_place(trained_net):
    net, returned_same, kernel_kept = trained_net
    assert returned_same and kernel_kept
    assert is_quantized_model(net)
    assert isinstance(net.conv.quantized, QuantizeWrapper)
    assert net.conv.quantized.layer is net.conv.layer
    assert net.head.applied_options == (True, 8, "error")
    # Only the float weights train; the ranges are non-trainable.
    assert len(net.trainable_variables) == 4


def test_int8_artifact_agrees_with_the_qat_model(trained_net, digits_split):
    net, _, _ = trained_net
    x_train, _, x_test, y_test = digits_split
    model = _functional(net)
    content = convert_model(
        model,
        "int8",
        representative_dataset=_calibration(x_train),
        input_type="int8",
        output_type="int8",
    )
    assert _integer_only(content)
    assert _agreement(model, content, x_test) >= 0.99
    accuracy = np.mean(net.predict(x_test, verbose=0).argmax(-1) == y_test)
    assert accuracy > 0.85


def test_tflite_export_calibrates_the_unannotated_input(
    trained_net, digits_split, tmp_path
):
    net, _, _ = trained_net
    x_train, y_train, x_test, y_test = digits_split
    model = _functional(net)
    model.compile(keras.optimizers.Adam(1e-4), LOSS, metrics=["accuracy"])
    export = tflq.TFLiteExport(
        str(tmp_path / "net_{mode}.tflite"), mode="int8", verbose=0
    )
    model.fit(
        x_train[:256],
        y_train[:256],
        validation_data=(x_test, y_test),
        epochs=1,
        callbacks=[export],
        verbose=0,
    )
    assert export.report["quantization"] == "quantization-aware"
    assert export.report["calibration"] is not None
    assert export.report["tflite_metrics"]["accuracy"] > 0.85
    with open(export.exported_path, "rb") as artifact:
        content = artifact.read()
    assert _integer_only(content)
    assert _agreement(model, content, x_test) >= 0.99


def test_functional_wrapper_quantizes_the_input_too(digits_split):
    x_train, y_train, _, _ = digits_split
    net = DigitsNet()
    model = _functional(net)
    qat = tflq.quantize_apply(model)
    assert qat is not model and net.conv.quantized is not None
    qat.compile("adam", LOSS)
    qat.fit(x_train[:128], y_train[:128], epochs=1, verbose=0)
    # The input has a learned range: no calibration data needed.
    content = convert_model(qat, "int8", input_type="int8", output_type="int8")
    assert _integer_only(content)


def test_saved_model_reloads_quantized_and_resumes(
    trained_net, digits_split, tmp_path
):
    net, _, _ = trained_net
    x_train, y_train, x_test, _ = digits_split
    path = tmp_path / "net.keras"
    net.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, DigitsNet) and is_quantized_model(reloaded)
    np.testing.assert_array_equal(
        reloaded.predict(x_test, verbose=0), net.predict(x_test, verbose=0)
    )
    reloaded.fit(x_train[:64], y_train[:64], epochs=1, verbose=0)


def test_weights_file_quantizes_a_fresh_model(
    trained_net, digits_split, tmp_path
):
    net, _, _ = trained_net
    x_test = digits_split[2]
    path = str(tmp_path / "net.weights.h5")
    net.save_weights(path)
    fresh = DigitsNet()
    fresh(x_test[:1])
    fresh.load_weights(path)
    assert is_quantized_model(fresh)
    np.testing.assert_array_equal(
        fresh.predict(x_test, verbose=0), net.predict(x_test, verbose=0)
    )


def test_options_and_layers_reached_in_lists_and_nested_models():
    model = _Blocks()
    x = np.random.default_rng(0).random((8, 6, 6, 4), dtype="float32")
    model(x)
    tflq.quantize_apply(model, per_channel=False, activation_bits=16)
    conv, batch_norm, relu, dense = _annotations(model)
    assert conv.quantized.quantize_config.weight_axes == [None]
    assert isinstance(batch_norm.quantized, QuantizeChannelAffine)
    assert relu.quantized.quantize_config.activation_bits == 16
    assert dense.quantized is not None
    model(x, training=True)
    # Quantizing again with the same options changes nothing.
    assert tflq.quantize_apply(model, False, 16) is model
    with pytest.raises(ValueError, match=r"quantized once, or again with"):
        tflq.quantize_apply(model)


def test_custom_quantize_config_is_used():
    config = DefaultQuantizeConfig(["kernel"], [None])
    dense = tflq.quantize_annotate_layer(L.Dense(3), config)
    model = _Blocks(last=dense)
    model(np.ones((2, 6, 6, 4), "float32"))
    tflq.quantize_apply(model)
    assert dense.quantized.quantize_config is config


def test_unsupported_annotated_layer_named():
    unsupported = tflq.quantize_annotate_layer(L.RMSNormalization(name="ln"))
    model = _Blocks(last=unsupported)
    model(np.ones((2, 6, 6, 4), "float32"))
    with pytest.raises(
        ValueError,
        match=r"Received: layer='ln' of type RMSNormalization: it is not "
        r"supported by the default quantization scheme\. Pass "
        r'`unsupported="float"`',
    ):
        tflq.quantize_apply(model)
    # Nothing was changed by the refused call.
    assert all(a.quantized is None for a in _annotations(model))
    tflq.quantize_apply(model, unsupported="float")
    assert unsupported.quantized is None and unsupported.applied_options
    assert is_quantized_model(model)


@pytest.mark.parametrize(
    "layer, match",
    [
        (L.Dense(3, activation="tanh"), r"activation 'tanh' is not fused"),
        (L.SeparableConv2D(3, 1), r"use a DepthwiseConv2D and a 1x1 Conv2D"),
        (L.Activation("hard_sigmoid"), r"hard_sigmoid runs as several"),
    ],
)
def test_layers_not_quantizable_in_place_named(layer, match):
    class One(keras.Model):
        def __init__(self):
            super().__init__()
            self.inner = tflq.quantize_annotate_layer(layer)

        def call(self, x):
            return self.inner(x)

    model = One()
    model(np.ones((2, 4, 4, 2), "float32"))
    with pytest.raises(ValueError, match=match):
        tflq.quantize_apply(model)


def test_unbuilt_or_unannotated_models_refused():
    with pytest.raises(ValueError, match=r"Expected a built model"):
        tflq.quantize_apply(DigitsNet())

    class Plain(keras.Model):
        def __init__(self):
            super().__init__(name="plain")
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    plain = Plain()
    plain(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"model='plain' .*no annotated layer"):
        tflq.quantize_apply(plain)
    with pytest.raises(
        ValueError, match=r"Expected a Functional or Sequential model.*inline"
    ):
        tflq.quantize_model(plain)
