"""`ConvBatchNormFold`: a convolution with its BatchNormalization folded in."""

import keras
from keras import ops

from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.serialization import pop_objects

_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
FOLDABLE_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D) + _DEPTHWISE


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


def conv_weight_axis(conv):
    """The per-channel axis of `conv`'s kernel in TFLite's int8 spec.

    None (per-tensor) for 1-D convolutions: they run as 2-D ones on an
    expanded kernel, and the converter rejects the moved channel axis.
    """
    if len(conv.kernel_size) != 2:
        return None
    if isinstance(conv, _DEPTHWISE):
        # Channels of a depthwise kernel (..., in, multiplier) are in*mult;
        # one axis holds them all only when the multiplier is 1.
        return len(conv.kernel_size) if conv.depth_multiplier == 1 else None
    return len(conv.kernel_size) + 1


@keras.saving.register_keras_serializable(package="keras_tflq")
class ConvBatchNormFold(keras.layers.Layer):
    """A convolution and the BatchNormalization after it, folded for QAT.

    The BatchNormalization scale is folded into the kernel before the kernel
    is fake-quantized, so training sees the weights TFLite will run. In
    training the batch statistics normalize the output (and update the
    moving statistics) until `bn_frozen` is set to 1, after which the moving
    statistics are used, as at inference.

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
        default_quantize_config.check_activation_bits(activation_bits)
        kwargs.setdefault("name", f"quant_{conv.name}")
        super().__init__(**kwargs)
        self.conv = conv
        self.batch_norm = batch_norm
        self.per_channel = bool(per_channel)
        self.quantize_output = bool(quantize_output)
        self.activation_bits = activation_bits

    def build(self, input_shape):
        if not self.conv.built:
            self.conv.build(input_shape)
        output_shape = self.conv.compute_output_shape(input_shape)
        if not self.batch_norm.built:
            self.batch_norm.build(output_shape)
        axis = conv_weight_axis(self.conv) if self.per_channel else None
        self._weight_quantizer = default_quantize_config.weight_quantizer(axis)
        self._weight_vars = self._weight_quantizer.build(
            tuple(self.conv.kernel.shape), "kernel", self
        )
        self._output_quantizer, self._output_vars = (
            default_quantize_config.build_output_quantizer(self, output_shape)
        )
        schedule_state.add_schedule_variables(self, batch_norm=True)
        self.built = True

    def _convolve(self, inputs, kernel):
        conv = self.conv
        if isinstance(conv, _DEPTHWISE):
            return ops.depthwise_conv(
                inputs,
                kernel,
                strides=conv.strides,
                padding=conv.padding,
                dilation_rate=conv.dilation_rate,
                data_format=conv.data_format,
            )
        return conv.convolution_op(inputs, kernel)

    def call(self, inputs, training=None):
        conv, bn = self.conv, self.batch_norm
        kernel = ops.convert_to_tensor(conv.kernel)
        # Batch statistics in training until `bn_frozen` (a Python bool
        # when it is fixed for this trace, else a boolean tensor).
        frozen = (
            schedule_state.flag(self, schedule_state.BN_FROZEN)
            if training
            else True
        )
        batch_stats = frozen is not True
        if batch_stats:
            raw = self._convolve(inputs, kernel)
            if conv.use_bias:
                raw = raw + conv.bias
            axes = list(range(len(raw.shape) - 1))
            batch_mean, batch_variance = ops.moments(raw, axes)
            momentum = bn.momentum
            for moving, batch in (
                (bn.moving_mean, batch_mean),
                (bn.moving_variance, batch_variance),
            ):
                updated = momentum * moving + (1.0 - momentum) * batch
                if frozen is not False:
                    updated = ops.where(frozen, moving, updated)
                moving.assign(updated)
        # Read after the update: the kernel range stored in training is
        # then the range of the kernel folded at inference.
        moving_mean = ops.convert_to_tensor(bn.moving_mean)
        moving_sigma = ops.sqrt(bn.moving_variance + bn.epsilon)
        correction = None
        if not batch_stats:
            mean, sigma = moving_mean, moving_sigma
        elif frozen is False:
            mean = batch_mean
            sigma = ops.sqrt(batch_variance + bn.epsilon)
            correction = moving_sigma / sigma
        else:
            batch_sigma = ops.sqrt(batch_variance + bn.epsilon)
            mean = ops.where(frozen, moving_mean, batch_mean)
            sigma = ops.where(frozen, moving_sigma, batch_sigma)
            correction = moving_sigma / sigma
        scale = bn.gamma / moving_sigma if bn.scale else 1.0 / moving_sigma
        if isinstance(conv, _DEPTHWISE):
            scale = ops.reshape(scale, kernel.shape[-2:])
        folded = kernel * scale
        quantized = schedule_state.quantize(
            self, self._weight_quantizer, folded, training, self._weight_vars
        )
        outputs = self._convolve(inputs, quantized)
        if correction is not None:
            outputs = outputs * correction
        # beta + gamma * (bias - mean) / sigma, without the zero terms.
        shift = mean - conv.bias if conv.use_bias else mean
        if bn.scale:
            shift = bn.gamma * shift
        offset = shift / sigma
        offset = bn.beta - offset if bn.center else -offset
        outputs = outputs + offset
        return schedule_state.quantize_output(self, outputs, training)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "conv": keras.saving.serialize_keras_object(self.conv),
            "batch_norm": keras.saving.serialize_keras_object(self.batch_norm),
            "per_channel": self.per_channel,
            "quantize_output": self.quantize_output,
            "activation_bits": self.activation_bits,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        (conv, batch_norm), config = pop_objects(
            config, ("conv", "batch_norm"), custom_objects
        )
        return cls(conv, batch_norm, **config)
