"""`QuantizeLayerNormalization`: LayerNormalization as TFLite's int8 ops."""

import math

import keras
from keras import ops

from keras_tflq.quantization import quantizers
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme.wrapping_layer import (
    WrappingSchemeLayer,
)
from keras_tflq.quantization.quantizer_base import build_quantizer

# The tensors TFLite's int8 graph of a layer normalization quantizes, in
# the order they are computed (the output is `SchemeLayer`'s).
_STEPS = (
    "mean",  # MEAN(x)
    "centered",  # SUB(x, mean)
    "squared",  # MUL(centered, centered)
    "variance",  # MEAN(squared)
    "variance_epsilon",  # variance + epsilon (ADD, or a 1x1 depthwise)
    "inverse_std",  # RSQRT
)


def _check_layer_normalization(layer, rank):
    """Refuses a LayerNormalization the int8 decomposition cannot run."""
    axis = layer.axis
    axes = [axis] if isinstance(axis, int) else list(axis)
    if [a % rank for a in axes] != [rank - 1] or layer.rms_scaling:
        raise ValueError(
            "Expected a LayerNormalization over the last axis, without "
            "`rms_scaling`, to quantize it (TFLite runs it as MEAN, SUB, "
            "MUL, RSQRT ops over the last axis). Received: "
            f"layer={layer.name!r} with axis={axis!r}, "
            f"rms_scaling={layer.rms_scaling!r}. Pass "
            '`unsupported="float"` to keep it float.'
        )


@keras.saving.register_keras_serializable(package="keras_tflq")
class QuantizeLayerNormalization(WrappingSchemeLayer):
    """Runs a `LayerNormalization` as the int8 ops TFLite runs it with.

    TFLite has no layer-normalization kernel: the converter keeps the ops
    of `(x - mean) * rsqrt(variance + epsilon) * gamma + beta`, each with
    an integer output. This layer computes those ops and fake-quantizes
    each of their outputs with a range of its own: the mean, the centered
    input, its square, the variance, the variance plus epsilon, the
    reciprocal square root, the normalized input and the output.

    With 8-bit activations the constant steps are the ops post-training
    quantization gives (`ADD` of epsilon, `MUL` by gamma and `ADD` of
    beta, gamma and beta fake-quantized per tensor, the product with a
    range of its own), so the QAT artifact has PTQ's ops. With 16-bit
    activations they run as 1x1 `DEPTHWISE_CONV_2D` ops (the addend in the
    bias, the factor as a per-channel kernel): `variance * 1 + epsilon`
    and `normalized * gamma + beta`, since the converter rejects an int16
    `ADD` of a broadcast constant.

    Args:
        layer: a `LayerNormalization` over the last axis.
        quantize_output: fake-quantize the output. Defaults to `True`.
        activation_bits: 8 or 16. Defaults to `8`.
        **kwargs: base layer arguments.

    Example:

    ```python
    import keras
    from keras_tflq.quantization.default_scheme.layer_normalization import (
        QuantizeLayerNormalization,
    )

    norm = QuantizeLayerNormalization(keras.layers.LayerNormalization())
    y = norm(keras.ops.ones((1, 4, 8)))
    ```
    """

    wrapped_class = keras.layers.LayerNormalization

    def build(self, input_shape):
        _check_layer_normalization(self.layer, len(input_shape))
        if not self.layer.built:
            self.layer.build(input_shape)
        schedule_state.add_schedule_variables(self)
        self._steps = {}
        layer = self.layer
        affine = layer.gamma is not None or layer.beta is not None
        steps = _STEPS + (("normalized",) if affine else ())
        if self._constant_ops() and layer.gamma is not None and (
            layer.beta is not None
        ):
            steps += ("scaled",)  # normalized * gamma, before + beta
        for name in steps:
            quantizer = default_quantize_config.activation_quantizer(
                self.activation_bits
            )
            weights = build_quantizer(quantizer, None, name, self)
            self._steps[name] = (quantizer, weights)
        self._kernels = {}
        if self._constant_ops():
            # `* gamma` and `+ beta` as MUL and ADD of a constant: one
            # range per tensor, as the converter stores them.
            for name in ("gamma", "beta"):
                if getattr(layer, name) is None:
                    continue
                quantizer = quantizers.LastValueQuantizer(
                    num_bits=8,
                    per_axis=False,
                    symmetric=False,
                    narrow_range=False,
                )
                weights = build_quantizer(
                    quantizer, (input_shape[-1],), name, self
                )
                self._kernels[name] = (quantizer, weights)
        else:
            # `+ epsilon` and `* gamma + beta` run as 1x1 depthwise
            # convolutions (kernel per channel, the addend in the bias):
            # the converter rejects the ADD of a constant in 16x8 graphs.
            for name, channels in (
                ("epsilon", 1),
                ("affine", input_shape[-1]),
            ):
                quantizer = default_quantize_config.weight_quantizer(2)
                weights = build_quantizer(
                    quantizer, (1, 1, channels, 1), f"{name}_kernel", self
                )
                self._kernels[name] = (quantizer, weights)
        self.build_output_quantizer(input_shape)
        self.built = True

    def _constant_ops(self):
        """Whether the constant steps run as ADD and MUL (8-bit
        activations) rather than as 1x1 depthwise convolutions."""
        return self.activation_bits == 8

    def _constant(self, name, values, training):
        quantizer, weights = self._kernels[name]
        return schedule_state.quantize(
            self, quantizer, values, training, weights
        )

    def _step(self, name, values, training):
        quantizer, weights = self._steps[name]
        return schedule_state.quantize(
            self, quantizer, values, training, weights
        )

    def _depthwise(self, name, values, scale, offset, training):
        """`values * scale + offset` over the last axis, as TFLite's
        `DEPTHWISE_CONV_2D` with a fake-quantized per-channel kernel."""
        shape = values.shape
        channels = shape[-1]
        quantizer, weights = self._kernels[name]
        kernel = schedule_state.quantize(
            self,
            quantizer,
            ops.reshape(scale, (1, 1, channels, 1)),
            training,
            weights,
        )
        images = ops.reshape(values, (-1, 1, math.prod(shape[1:-1]), channels))
        outputs = ops.depthwise_conv(images, kernel, padding="valid")
        if offset is not None:
            outputs = outputs + offset
        return ops.reshape(outputs, (-1,) + tuple(shape[1:]))

    def call(self, inputs, training=None):
        training = bool(training)
        layer = self.layer
        mean = self._step(
            "mean", ops.mean(inputs, axis=-1, keepdims=True), training
        )
        centered = self._step("centered", inputs - mean, training)
        squared = self._step("squared", centered * centered, training)
        variance = self._step(
            "variance", ops.mean(squared, axis=-1, keepdims=True), training
        )
        if self._constant_ops():
            variance = variance + layer.epsilon
        else:
            epsilon = ops.full((1,), layer.epsilon, "float32")
            variance = self._depthwise(
                "epsilon", variance, ops.ones((1,)), epsilon, training
            )
        variance = self._step("variance_epsilon", variance, training)
        inverse_std = self._step("inverse_std", ops.rsqrt(variance), training)
        outputs = centered * inverse_std
        if layer.gamma is None and layer.beta is None:
            return self.quantized_output(outputs, training)
        outputs = self._step("normalized", outputs, training)
        if self._constant_ops():
            if layer.gamma is not None:
                gamma = self._constant("gamma", layer.gamma, training)
                outputs = outputs * gamma
            if layer.gamma is not None and layer.beta is not None:
                outputs = self._step("scaled", outputs, training)
            if layer.beta is not None:
                outputs = outputs + self._constant("beta", layer.beta, training)
            return self.quantized_output(outputs, training)
        channels = inputs.shape[-1]
        gamma = ops.ones((channels,)) if layer.gamma is None else layer.gamma
        outputs = self._depthwise(
            "affine", outputs, gamma, layer.beta, training
        )
        return self.quantized_output(outputs, training)

    def compute_output_shape(self, input_shape):
        return input_shape
