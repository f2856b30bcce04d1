"""`fake_quant` in training: the element-wise per-channel path gives
TensorFlow's per-channel op's values and gradients, bit for bit."""

import numpy as np
import pytest
import tensorflow as tf

from keras_tflq.quantization.fake_quant import fake_quant

CASES = [(8, True), (8, False), (4, False), (16, True), (2, False)]


def _ranges(rng, channels, symmetric):
    high = np.abs(rng.normal(size=channels)) * 3 + 1e-6
    low = -high if symmetric else -np.abs(rng.normal(size=channels))
    return tf.constant(low, "float32"), tf.constant(high, "float32")


@pytest.mark.parametrize("num_bits,narrow_range", CASES)
def test_training_per_channel_matches_tensorflow_op(num_bits, narrow_range):
    rng = np.random.default_rng(num_bits)
    for trial, shape in enumerate([(3, 3, 4, 24), (1, 1, 96, 40), (5, 7)]):
        x = tf.constant(rng.normal(size=shape) * 2, "float32")
        low, high = _ranges(rng, shape[-1], symmetric=trial % 2 == 0)
        upstream = tf.constant(rng.normal(size=shape), "float32")
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, low, high])
            expected = tf.quantization.fake_quant_with_min_max_vars_per_channel(
                x, low, high, num_bits=num_bits, narrow_range=narrow_range
            )
            actual = fake_quant(
                x, low, high, num_bits, narrow_range, axis=-1, training=True
            )
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
        wanted = tape.gradient(expected, [x, low, high], upstream)
        got = tape.gradient(actual, [x, low, high], upstream)
        np.testing.assert_array_equal(got[0].numpy(), wanted[0].numpy())
        for got_range, wanted_range in zip(got[1:], wanted[1:], strict=True):
            np.testing.assert_allclose(
                got_range.numpy(), wanted_range.numpy(), rtol=1e-5, atol=1e-5
            )


def test_training_path_is_element_wise_and_inference_keeps_the_op():
    x = tf.constant(np.linspace(-2, 2, 3 * 3 * 2 * 8), "float32")
    x = tf.reshape(x, (3, 3, 2, 8))
    low, high = -tf.ones((8,)), tf.ones((8,))

    @tf.function
    def train(values):
        return fake_quant(values, low, high, 8, True, axis=-1, training=True)

    @tf.function
    def infer(values):
        return fake_quant(values, low, high, 8, True, axis=-1)

    def op_types(function):
        graph = function.get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "FakeQuantWithMinMaxVarsPerChannel" not in op_types(train)
    # The inference graph, which the converter reads, keeps the op.
    assert "FakeQuantWithMinMaxVarsPerChannel" in op_types(infer)
    np.testing.assert_array_equal(train(x).numpy(), infer(x).numpy())


def test_depthwise_kernel_channel_axis_matches_tensorflow_op():
    rng = np.random.default_rng(1)
    kernel = tf.constant(rng.normal(size=(3, 3, 6, 1)), "float32")
    low, high = _ranges(rng, 6, symmetric=True)
    expected = tf.reshape(
        tf.quantization.fake_quant_with_min_max_vars_per_channel(
            tf.reshape(kernel, (3, 3, 6)), low, high, narrow_range=True
        ),
        (3, 3, 6, 1),
    )
    actual = fake_quant(kernel, low, high, 8, True, axis=2, training=True)
    np.testing.assert_array_equal(actual.numpy(), expected.numpy())
