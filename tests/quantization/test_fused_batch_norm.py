"""`batch_normalize`: training-mode BatchNormalization for the QAT layers,
on TensorFlow's fused kernel where it applies, with the values, gradients
and moving statistics of Keras' own `BatchNormalization`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tflq.quantization.default_scheme.batch_norm import batch_normalize


def _batch_norms(channels, x, **kwargs):
    """A Keras BatchNormalization and a copy with the same weights."""
    rng = np.random.default_rng(2)
    reference = keras.layers.BatchNormalization(momentum=0.8, **kwargs)
    reference.build(x.shape)
    for name in ("gamma", "moving_variance"):
        if getattr(reference, name, None) is not None:
            getattr(reference, name).assign(rng.uniform(0.5, 2.0, channels))
    for name in ("beta", "moving_mean"):
        if getattr(reference, name, None) is not None:
            getattr(reference, name).assign(rng.normal(size=channels))
    copy = keras.layers.BatchNormalization.from_config(reference.get_config())
    copy.build(x.shape)
    copy.set_weights(reference.get_weights())
    return reference, copy


def _op_types(function, *args):
    graph = function.get_concrete_function(*args).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("shape", [(8, 5, 5, 6), (8, 9, 6)], ids=["4d", "3d"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_fused_path_matches_keras_batch_normalization(shape, affine):
    x = tf.constant(
        np.random.default_rng(0).normal(1.0, 3.0, shape), "float32"
    )
    reference, layer = _batch_norms(
        shape[-1], x, center=affine, scale=affine
    )
    upstream = tf.constant(np.random.default_rng(1).normal(size=shape))
    upstream = tf.cast(upstream, "float32")

    @tf.function
    def step(bn, values, fused):
        with tf.GradientTape() as tape:
            tape.watch(values)
            if fused:
                outputs = batch_normalize(bn, values, frozen=False)
            else:
                outputs = bn(values, training=True)
        return outputs, tape.gradient(
            outputs, [values, *bn.trainable_weights], upstream
        )

    assert "FusedBatchNormV3" in _op_types(step, layer, x, True)
    assert "FusedBatchNormV3" not in _op_types(step, reference, x, False)
    got, got_grads = step(layer, x, True)
    expected, expected_grads = step(reference, x, False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    for g, e in zip(got_grads, expected_grads, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
    # Moving statistics: Keras' update, with the biased batch variance
    # (the traced functions ran once each above, and once more here).
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(
            getattr(layer, name).numpy(),
            getattr(reference, name).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def test_scheduled_freezing_uses_the_keras_maths():
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3, 3, 2)))
    x = tf.cast(x, "float32")
    _, layer = _batch_norms(2, x)

    @tf.function
    def scheduled(values, frozen):
        return batch_normalize(layer, values, frozen)

    # A freezing flag known only when the step runs takes the unfused
    # maths: the fused kernel's training mode cannot switch to the moving
    # statistics.
    assert "FusedBatchNormV3" not in _op_types(
        scheduled, x, tf.constant(False)
    )
    frozen = scheduled(x, tf.constant(True)).numpy()
    moving = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    expected = (x.numpy() - moving[0]) / np.sqrt(moving[1] + layer.epsilon)
    expected = expected * layer.gamma.numpy() + layer.beta.numpy()
    np.testing.assert_allclose(frozen, expected, rtol=1e-5, atol=1e-5)
