"""ConvBatchNormFold computes what conv + BatchNormalization compute."""

import keras
import numpy as np
import pytest
from qat_helpers import L

from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)

CONVS = {
    "conv2d": lambda: L.Conv2D(6, 3, padding="same"),
    "depthwise": lambda: L.DepthwiseConv2D(3, padding="same", use_bias=False),
    "depthwise_multiplier_2": lambda: L.DepthwiseConv2D(3, depth_multiplier=2),
    "conv1d": lambda: L.Conv1D(6, 3),
}
# Per-channel kernels train with one convolution; per-tensor ones (1-D
# convolutions, depth multipliers) with a float one for the statistics.
PER_CHANNEL = {name: CONVS[name] for name in ("conv2d", "depthwise")}


def _pair(make, x):
    keras.utils.set_random_seed(0)
    conv, bn = make(), L.BatchNormalization(momentum=0.5)
    bn(conv(x))
    rng = np.random.default_rng(1)
    channels = bn.gamma.shape[0]
    bn.gamma.assign(rng.uniform(0.5, 2.0, channels))
    bn.beta.assign(rng.normal(size=channels))
    bn.moving_mean.assign(rng.normal(size=channels))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
    fold = ConvBatchNormFold(
        type(conv).from_config(conv.get_config()),
        L.BatchNormalization.from_config(bn.get_config()),
        quantize_output=False,
    )
    fold(x)
    fold.conv.set_weights(conv.get_weights())
    fold.batch_norm.set_weights(bn.get_weights())
    return conv, bn, fold


def _input(make):
    rank = 3 if make is CONVS["conv1d"] else 4
    shape = (4, 8, 3) if rank == 3 else (4, 8, 8, 3)
    return np.random.default_rng(0).normal(size=shape).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("make", CONVS.values(), ids=CONVS.keys())
def test_inference_matches_conv_then_batch_norm(make):
    x = _input(make)
    conv, bn, fold = _pair(make, x)
    fold(x, training=True)  # set the kernel range; BN statistics move
    bn.set_weights(fold.batch_norm.get_weights())
    expected = _np(bn(conv(x), training=False))
    got = _np(fold(x, training=False))
    # Only the 8-bit kernel quantization differs.
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()


def _fake_quant(kernel, channel_axis):
    """Symmetric narrow-range 8-bit quantization, per channel or tensor."""
    axes = tuple(i for i in range(kernel.ndim) if i != channel_axis)
    if channel_axis is None:
        axes = None
    bound = np.abs(kernel).max(axis=axes, keepdims=True)
    step = bound / 127.0
    return np.clip(np.round(kernel / step), -127, 127) * step


def _statistics_source(conv, fold, x):
    """The convolution output the batch statistics come from: the float
    one for per-tensor kernels, the fake-quantized one for per-channel."""
    if not fold._weight_quantizer.per_axis:
        return _np(conv(x))
    twin = type(conv).from_config(conv.get_config())
    twin(x)
    kernel, *bias = conv.get_weights()
    twin.set_weights([_fake_quant(kernel, fold._weight_quantizer.axis)] + bias)
    return _np(twin(x))


@pytest.mark.parametrize("make", CONVS.values(), ids=CONVS.keys())
def test_training_normalizes_with_batch_statistics(make):
    x = _input(make)
    conv, bn, fold = _pair(make, x)
    expected = _np(bn(conv(x), training=True))
    got = _np(fold(x, training=True))
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
    # The moving statistics moved as BatchNormalization's do on the
    # convolution the statistics come from.
    bn.set_weights(_pair(make, x)[1].get_weights())
    bn(_statistics_source(conv, fold, x), training=True)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            getattr(fold.batch_norm, name).numpy(),
            getattr(bn, name).numpy(),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize(
    "make", PER_CHANNEL.values(), ids=PER_CHANNEL.keys()
)
def test_one_convolution_equals_the_folded_quantized_convolution(make):
    """Training output == conv(x, fq(kernel * gamma / moving sigma)),
    corrected to the batch statistics: BatchNormalization folded."""
    x = _input(make)
    conv, _, fold = _pair(make, x)
    got = _np(fold(x, training=True))
    bn = fold.batch_norm
    gamma, beta, moving_mean, moving_variance = bn.get_weights()
    moving_sigma = np.sqrt(moving_variance + bn.epsilon)
    kernel, bias = conv.get_weights() if conv.use_bias else (
        conv.get_weights()[0],
        np.zeros_like(gamma),
    )
    axis = fold._weight_quantizer.axis
    scale = (gamma / moving_sigma).reshape(kernel.shape[axis:])
    folded = _fake_quant(kernel * scale, axis)
    # The stored range is the kernel's own; inference scales it by |s|.
    np.testing.assert_allclose(
        fold._weight_vars["max_var"].numpy().ravel(),
        np.abs(kernel).max(axis=(0, 1, 2 if axis == 3 else 3)),
        rtol=1e-6,
    )
    statistics = _statistics_source(conv, fold, x)
    batch_mean = statistics.mean(axis=(0, 1, 2))
    batch_sigma = np.sqrt(statistics.var(axis=(0, 1, 2)) + bn.epsilon)
    twin = type(conv).from_config(conv.get_config())
    twin(x)
    zero_bias = [np.zeros_like(bias)] if conv.use_bias else []
    twin.set_weights([folded] + zero_bias)
    expected = _np(twin(x)) * moving_sigma / batch_sigma + (
        beta - gamma * (batch_mean - bias) / batch_sigma
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", CONVS.values(), ids=CONVS.keys())
@pytest.mark.parametrize(
    "state",
    [(0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 0)],
    ids=lambda s: "bn_frozen={},ranges_frozen={},enabled={}".format(*s),
)
def test_scheduled_flags_train_as_fixed_flags(make, state):
    """A QuantizationSchedule gates on tensors; the result is the one the
    Python branches for the same values give."""
    x = _input(make)
    layers = []
    for scheduled in (False, True):
        _, _, fold = _pair(make, x)
        fold(x, training=True)  # a stored kernel range to freeze
        fold.conv.kernel.assign(fold.conv.kernel * 1.5)
        for name, value in zip(
            ("bn_frozen", "ranges_frozen", "quantize_enabled"),
            state,
            strict=True,
        ):
            getattr(fold, name).assign(float(value))
        if scheduled:
            schedule_state.mark_scheduled(fold, schedule_state.NAMES)
        layers.append((fold, _np(fold(x, training=True))))
    (fixed, fixed_out), (gated, gated_out) = layers
    np.testing.assert_allclose(gated_out, fixed_out, rtol=1e-5, atol=1e-5)
    for a, b in zip(fixed.weights, gated.weights, strict=True):
        np.testing.assert_allclose(
            b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path
        )


def test_frozen_ranges_keep_the_stored_kernel_range():
    x = _input(CONVS["conv2d"])
    _, _, fold = _pair(CONVS["conv2d"], x)
    fold(x, training=True)
    stored = fold._weight_vars["max_var"].numpy().copy()
    fold.ranges_frozen.assign(1.0)
    fold.conv.kernel.assign(fold.conv.kernel * 3.0)
    fold(x, training=True)
    np.testing.assert_array_equal(fold._weight_vars["max_var"].numpy(), stored)


def test_frozen_statistics_stay_and_training_uses_them():
    make = CONVS["conv2d"]
    x = _input(make)
    conv, bn, fold = _pair(make, x)
    fold.bn_frozen.assign(1.0)
    moving = fold.batch_norm.moving_mean.numpy().copy()
    got = _np(fold(x, training=True))
    np.testing.assert_array_equal(fold.batch_norm.moving_mean.numpy(), moving)
    np.testing.assert_allclose(got, _np(fold(x, training=False)), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(conv=L.Dense(3)), "Expected `conv` to be a Conv1D, Conv2D"),
        (
            dict(batch_norm=L.ReLU()),
            "Expected `batch_norm` to be a BatchNormalization layer",
        ),
        (dict(activation_bits=4), "Received: activation_bits=4"),
    ],
    ids=["conv", "batch_norm", "bits"],
)
def test_bad_arguments_rejected(kwargs, match):
    args = dict(conv=L.Conv2D(3, 3), batch_norm=L.BatchNormalization())
    with pytest.raises(ValueError, match=match):
        ConvBatchNormFold(**{**args, **kwargs})
