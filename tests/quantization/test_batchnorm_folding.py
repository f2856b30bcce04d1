"""ConvBatchNormFold computes what conv + BatchNormalization compute."""

import keras
import numpy as np
import pytest
from qat_helpers import L

from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)

CONVS = {
    "conv2d": lambda: L.Conv2D(6, 3, padding="same"),
    "depthwise": lambda: L.DepthwiseConv2D(3, padding="same", use_bias=False),
    "depthwise_multiplier_2": lambda: L.DepthwiseConv2D(3, depth_multiplier=2),
    "conv1d": lambda: L.Conv1D(6, 3),
}


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


@pytest.mark.parametrize("make", CONVS.values(), ids=CONVS.keys())
def test_training_normalizes_with_batch_statistics(make):
    x = _input(make)
    conv, bn, fold = _pair(make, x)
    expected = _np(bn(conv(x), training=True))
    got = _np(fold(x, training=True))
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
    # The moving statistics moved exactly as BatchNormalization's did.
    np.testing.assert_allclose(
        fold.batch_norm.moving_mean.numpy(),
        bn.moving_mean.numpy(),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        fold.batch_norm.moving_variance.numpy(),
        bn.moving_variance.numpy(),
        rtol=1e-4,
        atol=1e-5,
    )


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
