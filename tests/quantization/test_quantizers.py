"""Quantizers: arguments checked, ranges tracked as tfmot's are."""

import keras
import numpy as np
import pytest

from keras_tflq import quantizers

ALL = [
    quantizers.LastValueQuantizer,
    quantizers.MovingAverageQuantizer,
    quantizers.AllValuesQuantizer,
]
IDS = [cls.__name__ for cls in ALL]
ARGS = dict(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class _Owner(keras.layers.Layer):
    """A layer that only owns quantizer variables."""


def _built(quantizer, shape=(4, 3)):
    owner = _Owner()
    return owner, quantizer.build(shape, "x", owner)


@pytest.mark.parametrize("cls", ALL, ids=IDS)
def test_config_round_trip(cls):
    quantizer = cls(
        num_bits=4, per_axis=True, symmetric=True, narrow_range=True
    )
    restored = cls.from_config(quantizer.get_config())
    assert restored == quantizer
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(quantizer)
    )
    assert revived == quantizer


@pytest.mark.parametrize("cls", ALL, ids=IDS)
@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(num_bits=1), "num_bits"),
        (dict(num_bits=17), "num_bits"),
        (dict(num_bits=8.0), "num_bits"),
        (dict(per_axis="yes"), "per_axis"),
        (dict(symmetric=1), "symmetric"),
        (dict(narrow_range=None), "narrow_range"),
    ],
    ids=["bits_1", "bits_17", "bits_float", "per_axis", "symmetric", "narrow"],
)
def test_bad_arguments_rejected_at_construction(cls, bad, match):
    with pytest.raises(
        ValueError, match=rf"Expected `{match}`.*Received: {match}="
    ):
        cls(**{**ARGS, **bad})


def test_bad_ema_decay_rejected():
    with pytest.raises(
        ValueError, match="Expected `ema_decay`.*Received: ema_decay=1.5"
    ):
        quantizers.MovingAverageQuantizer(**ARGS, ema_decay=1.5)


def test_last_value_tracks_each_batch_and_is_per_channel():
    quantizer = quantizers.LastValueQuantizer(
        num_bits=8, per_axis=True, symmetric=True, narrow_range=True
    )
    _, weights = _built(quantizer)
    x = np.array([[1.0, -2.0, 0.5]] * 4, dtype="float32")
    y = quantizer(x, True, weights)
    np.testing.assert_allclose(weights["max_var"].numpy(), [1.0, 2.0, 0.5])
    np.testing.assert_allclose(weights["min_var"].numpy(), [-1.0, -2.0, -0.5])
    # Each value is the channel's range limit: exact after quantization.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), x, atol=1e-6)
    quantizer(x * 0.5, True, weights)
    np.testing.assert_allclose(weights["max_var"].numpy(), [0.5, 1.0, 0.25])


def test_moving_average_starts_at_first_batch_then_moves_slowly():
    quantizer = quantizers.MovingAverageQuantizer(**ARGS, ema_decay=0.9)
    _, weights = _built(quantizer)
    quantizer(np.array([0.0, 4.0], "float32"), True, weights)
    assert weights["max_var"].numpy() == pytest.approx(4.0)
    quantizer(np.array([0.0, 14.0], "float32"), True, weights)
    assert weights["max_var"].numpy() == pytest.approx(5.0)
    # Inference uses the stored range without updating it.
    y = quantizer(np.array([100.0], "float32"), False, weights)
    assert float(keras.ops.convert_to_numpy(y)[0]) == pytest.approx(
        5.0, abs=0.03
    )
    assert weights["max_var"].numpy() == pytest.approx(5.0)


def test_gradient_is_straight_through_and_skips_the_range():
    """Ranges are statistics (as in tfmot): values inside the range get the
    upstream gradient, clipped ones none, and nothing reaches the values
    that set the range."""
    import tensorflow as tf

    quantizer = quantizers.MovingAverageQuantizer(**ARGS, ema_decay=0.9)
    _, weights = _built(quantizer)
    quantizer(np.array([0.0, 4.0], "float32"), True, weights)
    x = tf.Variable([1.0, 2.0, 3.0, 14.0])
    with tf.GradientTape() as tape:
        y = quantizer(x, True, weights)  # range [0, 5]: 14 is clipped
        loss = tf.reduce_sum(y * [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(tape.gradient(loss, x), [1.0, 2.0, 3.0, 0.0])


def test_all_values_keeps_the_widest_range():
    quantizer = quantizers.AllValuesQuantizer(**ARGS)
    _, weights = _built(quantizer)
    quantizer(np.array([-1.0, 3.0], "float32"), True, weights)
    quantizer(np.array([-0.5, 1.0], "float32"), True, weights)
    assert weights["min_var"].numpy() == pytest.approx(-1.0)
    assert weights["max_var"].numpy() == pytest.approx(3.0)


def test_symmetric_range_is_symmetric_and_contains_zero():
    quantizer = quantizers.LastValueQuantizer(
        num_bits=8, per_axis=False, symmetric=True, narrow_range=True
    )
    _, weights = _built(quantizer)
    quantizer(np.array([1.0, 3.0], "float32"), True, weights)
    assert weights["min_var"].numpy() == pytest.approx(-3.0)
    assert weights["max_var"].numpy() == pytest.approx(3.0)


def test_fake_quant_rounds_to_the_grid():
    quantizer = quantizers.LastValueQuantizer(
        num_bits=2, per_axis=False, symmetric=False, narrow_range=False
    )
    _, weights = _built(quantizer)
    y = quantizer(np.array([0.0, 0.4, 1.1, 3.0], "float32"), True, weights)
    # 2 bits over [0, 3]: the grid is 0, 1, 2, 3.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), [0, 0, 1, 3])


def test_range_of_a_traced_relu_output_skips_the_min_reduction():
    import tensorflow as tf

    layer = keras.layers.Layer()
    q = quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False
    )
    traced_vars = q.build((4, 6), "traced", layer)
    eager_vars = q.build((4, 6), "eager", layer)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(4, 6)).astype("float32") for _ in range(3)]

    @tf.function
    def traced(x):
        return q(tf.nn.relu(x), True, traced_vars)

    graph = traced.get_concrete_function(batches[0]).graph
    op_types = [op.type for op in graph.get_operations()]
    assert "Max" in op_types and "Min" not in op_types
    for x in batches:
        traced_out = traced(x)
        eager_out = q(tf.nn.relu(x), True, eager_vars)
        np.testing.assert_array_equal(traced_out, eager_out)
    for key in ("min_var", "max_var"):
        np.testing.assert_array_equal(
            traced_vars[key].numpy(), eager_vars[key].numpy()
        )
    assert float(traced_vars["min_var"].numpy()) == 0.0


def test_relu_output_range_starts_at_zero_after_frozen_first_steps():
    # Frozen from the first step, the stored minimum stays at its initial
    # -6 while the range is marked as seen; the first update from a ReLU's
    # output puts it at 0 (no moving average from a placeholder).
    import tensorflow as tf

    layer = keras.layers.Layer()
    q = quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False
    )
    weights = q.build((4, 6), "relu", layer)
    x = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    q(tf.nn.relu(x), True, weights, ranges_frozen=True)
    assert float(weights["initialized"].numpy()) == 1.0
    assert float(weights["min_var"].numpy()) == -6.0

    @tf.function
    def update(x):
        return q(tf.nn.relu(x), True, weights)

    update(x)
    assert float(weights["min_var"].numpy()) == 0.0
    expected_max = 0.999 * 6.0 + 0.001 * float(np.max(x))
    assert float(weights["max_var"].numpy()) == pytest.approx(expected_max)
