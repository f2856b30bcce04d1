"""A quantized ReLU layer trains as one fake-quant op (`relu_fake_quant`):
the same outputs and ranges as the ReLU followed by its output quantizer,
the same gradients but within a rounding error of the range's end, without
the ReLU's ops in the training step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tflq.quantization import quantizers
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.quantize_config import QuantizeConfig
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper
from keras_tflq.quantization.relu_fake_quant import relu_cap

RELUS = {
    "relu6_layer": lambda: keras.layers.ReLU(6.0),
    "relu_layer": lambda: keras.layers.ReLU(),
    "relu_activation": lambda: keras.layers.Activation("relu"),
    "relu6_activation": lambda: keras.layers.Activation("relu6"),
}


def _wrapped(layer, config=None):
    config = config or registry.default_config(layer)
    wrapper = QuantizeWrapper(layer, config)
    wrapper.build((4, 5, 6))
    return wrapper


def _op_types(function, x):
    graph = function.get_concrete_function(x).graph
    return {op.type for op in graph.get_operations()}


def _train_step(wrapper):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = wrapper(x, training=True)
            loss = tf.reduce_sum(y * tf.range(1.0, 7.0))
        return y, tape.gradient(loss, x)

    return step


@pytest.mark.parametrize("name", list(RELUS))
def test_fused_training_matches_the_relu_then_its_quantizer(name):
    layer = RELUS[name]()
    wrapper = _wrapped(layer)
    reference_quantizer = quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False
    )
    owner = keras.layers.Layer()
    reference_vars = reference_quantizer.build(None, "reference", owner)

    @tf.function
    def reference_step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = reference_quantizer(layer(x), True, reference_vars)
            loss = tf.reduce_sum(y * tf.range(1.0, 7.0))
        return y, tape.gradient(loss, x)

    step = _train_step(wrapper)
    rng = np.random.default_rng(0)
    # Scales 1, 4 and 0.5: the range moves below and above the cap of 6.
    for scale in (1.0, 4.0, 0.5):
        x = tf.constant(rng.normal(0.5, 3.0, (4, 5, 6)) * scale, "float32")
        outputs, gradient = step(x)
        expected, expected_gradient = reference_step(x)
        np.testing.assert_array_equal(outputs, expected)
        output_vars = wrapper._output_entries[0][1]
        # The gradient may differ only within a rounding error of the
        # range's upper end.
        top = float(output_vars["max_var"].numpy())
        away = np.abs(x.numpy() - top) > 1e-5 * top
        assert away.sum() >= x.shape.num_elements() - 2
        np.testing.assert_array_equal(
            gradient.numpy()[away], expected_gradient.numpy()[away]
        )
        assert 0 < np.count_nonzero(gradient) < x.shape.num_elements()
        for key in ("min_var", "max_var"):
            np.testing.assert_array_equal(
                output_vars[key].numpy(), reference_vars[key].numpy()
            )
    assert float(output_vars["min_var"].numpy()) == 0.0
    cap = relu_cap(layer)
    assert 0.0 < float(output_vars["max_var"].numpy()) <= cap
    assert np.unique(outputs).size > 20


def test_training_step_has_no_relu_op_and_inference_keeps_it():
    wrapper = _wrapped(keras.layers.ReLU(6.0))
    x = tf.zeros((4, 5, 6))
    training_ops = _op_types(_train_step(wrapper), x)
    assert "FakeQuantWithMinMaxVars" in training_ops
    unfused = {"Relu6", "Min", "FakeQuantWithMinMaxVarsGradient"}
    assert not training_ops & unfused
    inference_ops = _op_types(
        tf.function(lambda x: wrapper(x, training=False)), x
    )
    assert {"Relu6", "FakeQuantWithMinMaxVars"} <= inference_ops


def test_leaky_relu_and_frozen_ranges_keep_the_relu():
    leaky = _wrapped(
        keras.layers.ReLU(negative_slope=0.1), DefaultQuantizeConfig()
    )
    x = tf.constant(
        np.random.default_rng(1).normal(size=(4, 5, 6)), "float32"
    )
    assert relu_cap(leaky.layer) is None
    assert "LeakyRelu" in _op_types(_train_step(leaky), x)

    frozen = _wrapped(keras.layers.ReLU(6.0))
    output_vars = frozen._output_entries[0][1]
    output_vars["min_var"].assign(0.0)
    output_vars["max_var"].assign(2.0)
    frozen.ranges_frozen.assign(1.0)
    step = _train_step(frozen)
    assert "Relu6" in _op_types(step, x)
    outputs, _ = step(x)
    expected = tf.quantization.fake_quant_with_min_max_vars(
        tf.nn.relu6(x), 0.0, 2.0
    )
    np.testing.assert_array_equal(outputs, expected)
    assert float(output_vars["max_var"].numpy()) == 2.0


class _ActivationAndOutputConfig(QuantizeConfig):
    """Quantizes an `Activation` layer's function and its output."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, _moving_average())]

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return [_moving_average()]

    def get_config(self):
        return {}


def _moving_average():
    return quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False
    )


def test_a_config_that_also_quantizes_the_activation_is_not_fused():
    wrapper = _wrapped(
        keras.layers.Activation("relu"), _ActivationAndOutputConfig()
    )
    x = tf.constant(
        np.random.default_rng(2).normal(size=(4, 5, 6)), "float32"
    )
    step = _train_step(wrapper)
    assert "Relu" in _op_types(step, x)
    outputs, _ = step(x)
    # Both quantizers ran: the activation's range and the output's moved.
    ranges = [
        float(variable.numpy())
        for variable in wrapper.non_trainable_variables
        if variable.path.endswith("_max")
    ]
    assert len(ranges) == 2 and all(0 < r < 6.0 for r in ranges)
    assert float(np.min(outputs)) >= 0.0
