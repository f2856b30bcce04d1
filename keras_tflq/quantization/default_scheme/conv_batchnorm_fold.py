"""`ConvBatchNormFold`: a convolution with its BatchNormalization folded in."""

import keras
from keras import ops

from keras_tflq.quantization import precision
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.base_layer import SchemeLayer
from keras_tflq.quantization.default_scheme.batch_norm import batch_normalize
from keras_tflq.quantization.default_scheme.batch_norm import batch_statistics
from keras_tflq.quantization.fake_quant import fake_quant
from keras_tflq.quantization.quantizer_base import build_quantizer
from keras_tflq.quantization.quantizers import LastValueQuantizer
from keras_tflq.quantization.serialization import pop_objects

# The table's convolutions (per-channel kernels) take a BatchNormalization.
FOLDABLE_CONVS = registry.classes_of(registry.Kind.CONV)


def can_fold(conv, bn):
    """Whether `bn` can be folded into `conv` (which feeds only `bn`)."""
    if not isinstance(conv, FOLDABLE_CONVS):
        return False
    activation = keras.activations.serialize(conv.activation)
    return (
        activation == "linear"
        and conv.built
        and conv.data_format == "channels_last"
        and conv.padding != "causal"
        and getattr(conv, "groups", 1) == 1
        and bn.axis in (-1, conv.kernel.ndim - 1)
        and not getattr(bn, "renorm", False)
        and not getattr(bn, "synchronized", False)
    )


@keras.saving.register_keras_serializable(package="keras_tflq")
class ConvBatchNormFold(SchemeLayer):
    """A convolution and the BatchNormalization after it, folded for QAT.

    The BatchNormalization scale is folded into the kernel before the kernel
    is fake-quantized, so training sees the weights TFLite will run. In
    training the batch statistics normalize the output (and update the
    moving statistics) until `bn_frozen` is set to 1, after which the moving
    statistics are used, as at inference. With per-channel kernels a
    training step runs one convolution; with per-tensor kernels, two (a
    float one gives the batch statistics).

    Args:
        conv: a `Conv1D`, `Conv2D`, `DepthwiseConv1D` or `DepthwiseConv2D`
            layer with a linear activation, channels last.
        batch_norm: the `BatchNormalization` layer that follows it.
        per_channel: per-channel kernel quantization. Defaults to `True`.
        quantize_output: fake-quantize the output (`False` when an
            activation TFLite fuses follows). Defaults to `True`.
        activation_bits: 8 or 16. Defaults to `8`.
        **kwargs: base layer arguments.

    Example:

    ```python
    import keras
    from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
        ConvBatchNormFold,
    )

    fold = ConvBatchNormFold(
        keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization())
    y = fold(keras.ops.ones((1, 8, 8, 1)))
    ```
    """

    def __init__(
        self,
        conv,
        batch_norm,
        per_channel=True,
        quantize_output=True,
        activation_bits=8,
        **kwargs,
    ):
        if not isinstance(conv, FOLDABLE_CONVS):
            raise ValueError(
                "Expected `conv` to be a Conv1D, Conv2D, DepthwiseConv1D or "
                f"DepthwiseConv2D layer. Received: conv={conv!r}"
            )
        if not isinstance(batch_norm, keras.layers.BatchNormalization):
            raise ValueError(
                "Expected `batch_norm` to be a BatchNormalization layer. "
                f"Received: batch_norm={batch_norm!r}"
            )
        kwargs.setdefault("name", f"quant_{conv.name}")
        super().__init__(
            quantize_output,
            activation_bits,
            **precision.float32_kwargs(kwargs, conv, batch_norm),
        )
        self.conv = conv
        self.batch_norm = batch_norm
        self.per_channel = bool(per_channel)

    def build(self, input_shape):
        if not self.conv.built:
            self.conv.build(input_shape)
        output_shape = self.conv.compute_output_shape(input_shape)
        if not self.batch_norm.built:
            self.batch_norm.build(output_shape)
        axis = None
        if self.per_channel:
            axis = registry.conv_weight_axis(self.conv)
        self._weight_quantizer = default_quantize_config.weight_quantizer(axis)
        self._weight_vars = build_quantizer(
            self._weight_quantizer,
            tuple(self.conv.kernel.shape),
            "kernel",
            self,
        )
        self.build_output_quantizer(output_shape)
        schedule_state.add_schedule_variables(self, batch_norm=True)
        self.built = True

    def _convolve(self, inputs, kernel):
        conv = self.conv
        if isinstance(conv, registry.DEPTHWISE_CONVS):
            return ops.depthwise_conv(
                inputs,
                kernel,
                strides=conv.strides,
                padding=conv.padding,
                dilation_rate=conv.dilation_rate,
                data_format=conv.data_format,
            )
        return conv.convolution_op(inputs, kernel)

    def _scale_and_offset(self, mean, variance):
        """BatchNormalization as `x * scale + offset` for these statistics."""
        bn = self.batch_norm
        scale = ops.rsqrt(variance + bn.epsilon)
        if bn.scale:
            scale = bn.gamma * scale
        offset = bn.beta - mean * scale if bn.center else -mean * scale
        return scale, offset

    def _unbiased(self, mean):
        """`mean` of the convolution output without its bias."""
        return mean - self.conv.bias if self.conv.use_bias else mean

    def _moving_scale_and_offset(self):
        """The fold of the moving statistics: the per-channel scale for the
        kernel and the offset that replaces the bias."""
        bn = self.batch_norm
        return self._scale_and_offset(
            self._unbiased(bn.moving_mean), bn.moving_variance
        )

    def _per_output_channel(self, vector):
        """`vector` (one value per output channel) shaped to multiply the
        kernel."""
        if isinstance(self.conv, registry.DEPTHWISE_CONVS):
            return ops.reshape(vector, self.conv.kernel.shape[-2:])
        return vector

    def call(self, inputs, training=None):
        # Batch statistics in training until `bn_frozen` (a Python bool
        # when it is fixed for this trace, else a boolean tensor).
        frozen = (
            schedule_state.flag(self, schedule_state.BN_FROZEN)
            if training
            else True
        )
        if self._weight_quantizer.per_axis:
            outputs = self._per_channel_conv(inputs, training, frozen)
        elif frozen is True:
            outputs = self._folded_conv(inputs, training)
        else:
            outputs = self._corrected_folded_conv(inputs, training, frozen)
        return self.quantized_output(outputs, training)

    def _quantized_folded_kernel(self, training):
        """Per-tensor kernels: the kernel folded with the moving statistics,
        fake-quantized, and the offset."""
        scale, offset = self._moving_scale_and_offset()
        folded = ops.convert_to_tensor(self.conv.kernel)
        folded = folded * self._per_output_channel(scale)
        quantized = schedule_state.quantize(
            self, self._weight_quantizer, folded, training, self._weight_vars
        )
        return quantized, offset

    def _folded_conv(self, inputs, training):
        """Per-tensor kernels at inference or with frozen statistics: the
        convolution with the folded, fake-quantized kernel."""
        quantized, offset = self._quantized_folded_kernel(training)
        return self._convolve(inputs, quantized) + offset

    def _kernel_bound(self, kernel, training):
        """The kernel's range bound (per channel) as the schedule allows,
        and `|kernel|` when the bound was just taken from it (a training
        step that updates the range), else `None`."""
        quantizer = self._weight_quantizer
        if (
            training
            and type(quantizer) is LastValueQuantizer
            and schedule_state.flag(self, schedule_state.RANGES_FROZEN)
            is False
        ):
            magnitudes = ops.abs(ops.stop_gradient(kernel))
            _, bound = quantizer.update_range(
                *quantizer.magnitude_range(magnitudes), self._weight_vars
            )
            return bound, magnitudes
        _, bound = schedule_state.kernel_range(
            self, quantizer, kernel, training, self._weight_vars
        )
        return bound, None

    def _fake_quant_kernel(self, kernel, bound, training, magnitudes=None):
        quantized = fake_quant(
            kernel,
            -bound,
            bound,
            num_bits=self._weight_quantizer.num_bits,
            narrow_range=self._weight_quantizer.narrow_range,
            axis=self._weight_quantizer.axis,
            training=bool(training),
            symmetric=True,
            magnitudes=magnitudes,
        )
        if not training:
            return quantized
        return schedule_state.gate(self, quantized, kernel)

    def _per_channel_conv(self, inputs, training, frozen):
        """Per-channel kernels, in one convolution.

        Symmetric per-channel quantization commutes with a per-channel
        scale: `fq(kernel * s)`, with each channel's range scaled by `|s|`,
        is `s * fq(kernel)`. So the stored range is the kernel's own, and
        with batch statistics the folded, fake-quantized convolution is the
        fake-quantized convolution normalized afterwards; its output gives
        the batch statistics. At inference (and with frozen statistics) the
        kernel is folded first, as TFLite runs it.
        """
        conv = self.conv
        kernel = ops.convert_to_tensor(conv.kernel)
        bound, magnitudes = self._kernel_bound(kernel, training)
        if frozen is True:
            scale, offset = self._moving_scale_and_offset()
            quantized = self._fake_quant_kernel(
                kernel * self._per_output_channel(scale),
                bound * ops.abs(scale),
                training,
            )
            return self._convolve(inputs, quantized) + offset
        quantized = self._fake_quant_kernel(
            kernel, bound, training, magnitudes
        )
        outputs = self._convolve(inputs, quantized)
        if conv.use_bias:
            outputs = outputs + conv.bias
        return batch_normalize(self.batch_norm, outputs, frozen)

    def _corrected_folded_conv(self, inputs, training, frozen):
        """Training with batch statistics and per-tensor weights.

        The scale no longer commutes with quantization, so the kernel is
        folded with the moving statistics and quantized, and the output
        corrected to the batch statistics, which a float convolution
        computes first (Krishnamoorthi, 2018).
        """
        conv, bn = self.conv, self.batch_norm
        raw = self._convolve(inputs, ops.convert_to_tensor(conv.kernel))
        if conv.use_bias:
            raw = raw + conv.bias
        mean, variance = batch_statistics(bn, raw, frozen)
        # Folded after the update: the kernel range stored in training is
        # then the range of the kernel folded at inference.
        quantized, _ = self._quantized_folded_kernel(training)
        # Undo the moving-statistics scale, apply the batch one: per output
        # channel, so on the (small) quantized kernel, not the output.
        correction = ops.sqrt(
            (bn.moving_variance + bn.epsilon) / (variance + bn.epsilon)
        )
        quantized = quantized * self._per_output_channel(correction)
        _, offset = self._scale_and_offset(self._unbiased(mean), variance)
        return self._convolve(inputs, quantized) + offset

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "conv": keras.saving.serialize_keras_object(self.conv),
            "batch_norm": keras.saving.serialize_keras_object(self.batch_norm),
            "per_channel": self.per_channel,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        (conv, batch_norm), config = pop_objects(
            config, ("conv", "batch_norm"), custom_objects
        )
        return cls(conv, batch_norm, **config)
