"""`fake_quant` in training: the element-wise per-channel path gives
TensorFlow's per-channel op's values and gradients, bit for bit, and runs
from `ELEMENT_WISE_FROM` elements up."""

import numpy as np
import pytest
import tensorflow as tf

from keras_tflq.quantization.fake_quant import ELEMENT_WISE_FROM
from keras_tflq.quantization.fake_quant import fake_quant

CASES = [(8, True), (8, False), (4, False), (16, True), (2, False)]


def _ranges(rng, channels, symmetric):
    high = np.abs(rng.normal(size=channels)) * 3 + 1e-6
    low = -high if symmetric else -np.abs(rng.normal(size=channels))
    return tf.constant(low, "float32"), tf.constant(high, "float32")


@pytest.mark.parametrize("num_bits,narrow_range", CASES)
def test_training_per_channel_matches_tensorflow_op(num_bits, narrow_range):
    rng = np.random.default_rng(num_bits)
    for trial, shape in enumerate([(3, 3, 16, 48), (1, 1, 96, 64), (97, 80)]):
        x = tf.constant(rng.normal(size=shape) * 2, "float32")
        symmetric = trial % 2 == 0
        low, high = _ranges(rng, shape[-1], symmetric=symmetric)
        upstream = tf.constant(rng.normal(size=shape), "float32")
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, low, high])
            expected = tf.quantization.fake_quant_with_min_max_vars_per_channel(
                x, low, high, num_bits=num_bits, narrow_range=narrow_range
            )
            # A symmetric range is said so: with a narrow range the ops
            # then skip the zero-point nudging.
            actual = fake_quant(
                x,
                low,
                high,
                num_bits,
                narrow_range,
                axis=-1,
                training=True,
                symmetric=symmetric,
            )
        np.testing.assert_array_equal(actual.numpy(), expected.numpy())
        wanted = tape.gradient(expected, [x, low, high], upstream)
        got = tape.gradient(actual, [x, low, high], upstream)
        np.testing.assert_array_equal(got[0].numpy(), wanted[0].numpy())
        for got_range, wanted_range in zip(got[1:], wanted[1:], strict=True):
            np.testing.assert_allclose(
                got_range.numpy(), wanted_range.numpy(), rtol=1e-5, atol=1e-5
            )


def _op_types(function, x):
    graph = function.get_concrete_function(x).graph
    return {op.type for op in graph.get_operations()}


def test_training_path_is_element_wise_and_inference_keeps_the_op():
    x = tf.constant(np.linspace(-2, 2, 3 * 3 * 32 * 24), "float32")
    x = tf.reshape(x, (3, 3, 32, 24))
    assert x.shape.num_elements() >= ELEMENT_WISE_FROM
    low, high = -tf.ones((24,)), tf.ones((24,))

    @tf.function
    def train(values):
        return fake_quant(values, low, high, 8, True, axis=-1, training=True)

    @tf.function
    def infer(values):
        return fake_quant(values, low, high, 8, True, axis=-1)

    assert "FakeQuantWithMinMaxVarsPerChannel" not in _op_types(train, x)
    # The inference graph, which the converter reads, keeps the op.
    assert "FakeQuantWithMinMaxVarsPerChannel" in _op_types(infer, x)
    np.testing.assert_array_equal(train(x).numpy(), infer(x).numpy())


def test_small_kernel_keeps_the_tensorflow_op_in_training():
    # Below ELEMENT_WISE_FROM, TensorFlow's kernel is the faster one.
    x = tf.reshape(tf.linspace(-2.0, 2.0, 3 * 3 * 16 * 32), (3, 3, 16, 32))
    assert x.shape.num_elements() < ELEMENT_WISE_FROM
    low, high = -tf.ones((32,)), tf.ones((32,))

    @tf.function
    def train(values):
        return fake_quant(values, low, high, 8, True, axis=-1, training=True)

    assert "FakeQuantWithMinMaxVarsPerChannel" in _op_types(train, x)


def test_depthwise_kernel_channel_axis_matches_tensorflow_op():
    rng = np.random.default_rng(1)
    kernel = tf.constant(rng.normal(size=(3, 3, 960, 1)), "float32")
    low, high = _ranges(rng, 960, symmetric=True)
    expected = tf.reshape(
        tf.quantization.fake_quant_with_min_max_vars_per_channel(
            tf.reshape(kernel, (3, 3, 960)), low, high, narrow_range=True
        ),
        (3, 3, 960, 1),
    )
    actual = fake_quant(kernel, low, high, 8, True, axis=2, training=True)
    np.testing.assert_array_equal(actual.numpy(), expected.numpy())


@pytest.mark.parametrize("num_bits", [8, 4, 16])
@pytest.mark.parametrize("widen", [1.0, 1.5], ids=["own", "wider"])
@pytest.mark.parametrize("axis", [-1, 2], ids=["last", "depthwise"])
def test_range_taken_from_the_kernel_skips_the_clamp(num_bits, widen, axis):
    # A symmetric range at least the kernel's own per-channel maximum
    # magnitude (the range a training step just took from it): no clamp
    # op, and TensorFlow's values and input gradients, bit for bit.
    rng = np.random.default_rng(num_bits)
    shape = (3, 3, 960, 1) if axis == 2 else (1, 1, 96, 80)
    kernel = tf.constant(rng.normal(size=shape) * 0.2, "float32")
    flat = tf.reshape(kernel, shape[:2] + (shape[2] * shape[3],))
    if axis == -1:
        flat = kernel
    magnitudes = tf.abs(kernel)
    reduce_axes = [i for i in range(4) if i != axis % 4]
    high = tf.reduce_max(magnitudes, reduce_axes) * widen
    upstream = tf.constant(rng.normal(size=shape), "float32")

    def quantize(values, magnitudes):
        return fake_quant(
            values,
            -high,
            high,
            num_bits,
            True,
            axis=axis,
            training=True,
            symmetric=True,
            magnitudes=magnitudes,
        )

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([kernel, flat])
        expected = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            flat, -high, high, num_bits=num_bits, narrow_range=True
        )
        actual = quantize(kernel, magnitudes)
    np.testing.assert_array_equal(
        tf.reshape(actual, expected.shape).numpy(), expected.numpy()
    )
    wanted = tape.gradient(expected, flat, tf.reshape(upstream, flat.shape))
    got = tape.gradient(actual, kernel, upstream)
    np.testing.assert_array_equal(
        tf.reshape(got, wanted.shape).numpy(), wanted.numpy()
    )
    # Every kept value's gradient passes (the range holds every value).
    assert np.count_nonzero(got.numpy()) >= got.shape.num_elements() - 960

    train = tf.function(lambda values: quantize(values, tf.abs(values)))
    ops_run = _op_types(train, kernel)
    assert not ops_run & {"Minimum", "FakeQuantWithMinMaxVarsPerChannel"}
