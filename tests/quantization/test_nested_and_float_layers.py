"""Nested models annotated as a layer are quantized inside; layers left in
float are reused, not rebuilt from their config."""

import keras
import numpy as np
import pytest
from qat_helpers import L

import keras_tflq as tflq
from keras_tflq.quantization import graph as keras_graph
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper


def _x(shape=(8, 6)):
    return np.random.default_rng(0).random(shape, dtype="float32")


def _block():
    return keras.Sequential(
        [keras.Input((6,)), L.Dense(5, activation="relu"), L.Dense(3)],
        name="block",
    )


def _quantized_denses(model):
    return [
        layer
        for layer in keras_graph.flatten_layers(model)
        if isinstance(layer, QuantizeWrapper)
        and isinstance(layer.layer, L.Dense)
    ]


def test_annotating_a_nested_model_annotates_every_layer_inside():
    block = _block()
    inputs = keras.Input((6,))
    annotated = tflq.quantize_annotate_layer(block)
    model = keras.Model(inputs, annotated(inputs))
    x = _x()
    # Annotation changes nothing yet.
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), block.predict(x, verbose=0)
    )
    assert [
        type(layer.layer).__name__
        for layer in annotated.layers
        if isinstance(layer, QuantizeAnnotate)
    ] == ["Dense", "Dense"]
    qat = tflq.quantize_apply(model)
    assert len(_quantized_denses(qat)) == 2
    qat(x, training=True)
    np.testing.assert_allclose(
        qat.predict(x, verbose=0), block.predict(x, verbose=0), atol=0.05
    )


def test_quantize_config_on_a_model_is_refused():
    config = tflq.quantization.default_scheme.registry.default_config(
        L.Dense(2)
    )
    with pytest.raises(
        ValueError,
        match=r"Expected `quantize_config` to be None for a model: .* "
        r"Annotate the layers inside the model instead.* "
        r"Received: layer='block' of type Sequential",
    ):
        tflq.quantize_annotate_layer(_block(), config)


def test_model_annotated_as_a_whole_is_refused_by_apply():
    # A QuantizeAnnotate around a model (built directly, or loaded from a
    # file saved before) is not silently left in float.
    inputs = keras.Input((6,))
    model = keras.Model(inputs, QuantizeAnnotate(_block())(inputs))
    with pytest.raises(
        ValueError,
        match=r"Expected the layers inside a model to be annotated, not the "
        r"model itself.* Received: model='block' of type Sequential",
    ):
        tflq.quantize_apply(model)


def _lambda_model():
    inputs = keras.Input((6,))
    x = L.Dense(4)(inputs)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    return keras.Model(inputs, L.Dense(2)(x))


QUANTIZE_WITH_FLOAT = {
    "quantize_model": lambda m: tflq.quantize_model(m, unsupported="float"),
    "annotate_then_apply": lambda m: tflq.quantize_apply(
        tflq.quantize_annotate_model(m, unsupported="float")
    ),
}


@pytest.mark.parametrize(
    "quantize", QUANTIZE_WITH_FLOAT.values(), ids=QUANTIZE_WITH_FLOAT.keys()
)
def test_python_lambda_left_in_float_is_reused(quantize):
    # Rebuilding a Lambda of a Python lambda from its config is refused in
    # Keras' safe mode; a float layer without weights is reused instead.
    model = _lambda_model()
    qat = quantize(model)
    assert qat.get_layer("double") is model.get_layer("double")
    assert len(_quantized_denses(qat)) == 2
    x = _x()
    qat(x, training=True)
    np.testing.assert_allclose(
        qat.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.05
    )


def test_float_layer_with_weights_is_copied_not_shared():
    inputs = keras.Input((6,))
    x = L.RMSNormalization(name="norm")(L.Dense(4)(inputs))
    model = keras.Model(inputs, L.Dense(2)(x))
    qat = tflq.quantize_model(model, unsupported="float")
    copy, original = qat.get_layer("norm"), model.get_layer("norm")
    assert copy is not original
    for got, expected in zip(
        copy.get_weights(), original.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
