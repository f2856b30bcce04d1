"""`QuantizeChannelAffine`: a per-channel affine layer run as one int8 op."""

import math

import keras
from keras import ops

from keras_tflq.quantization import precision
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.base_layer import SchemeLayer
from keras_tflq.quantization.default_scheme.batch_norm import batch_normalize
from keras_tflq.quantization.quantizer_base import build_quantizer
from keras_tflq.quantization.serialization import pop_objects

# BatchNormalization, Rescaling and Normalization, from the table.
_AFFINE = registry.classes_of(registry.Kind.BATCH_NORM, registry.Kind.AFFINE)


def is_channel_affine(layer, rank):
    """Whether `layer`, on inputs of `rank`, is a per-channel affine map."""
    last = (-1, rank - 1)
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.axis in last and not layer.renorm
    if isinstance(layer, keras.layers.Normalization):
        axis = layer.axis
        axis = (axis,) if isinstance(axis, int) else tuple(axis or ())
        return not layer.invert and len(axis) == 1 and axis[0] in last
    return isinstance(layer, keras.layers.Rescaling)


@keras.saving.register_keras_serializable(package="keras_tflq")
class QuantizeChannelAffine(SchemeLayer):
    """Runs a BatchNormalization, Normalization or Rescaling as one int8 op.

    At inference the layer computes `x * scale + offset` per channel as a
    1x1 depthwise convolution with a per-channel quantized kernel, which
    TFLite runs as a single int8 `DEPTHWISE_CONV_2D` (a multiply and an add
    would need a range in between). The per-channel kernel has one value
    per channel, so its quantization is exact. In training a
    BatchNormalization still normalizes with the batch statistics.

    Args:
        layer: a `BatchNormalization` (on the last axis), `Normalization`
            (on the last axis, not inverted) or `Rescaling` layer.
        activation_bits: 8 or 16. Defaults to `8`.
        quantize_output: fake-quantize the output. Defaults to `True`.
        **kwargs: base layer arguments.

    Example:

    ```python
    import keras
    from keras_tflq.quantization.default_scheme.channel_affine import (
        QuantizeChannelAffine,
    )

    affine = QuantizeChannelAffine(keras.layers.Rescaling(1 / 255.0))
    y = affine(keras.ops.ones((1, 4, 4, 3)))
    ```
    """

    def __init__(
        self, layer, activation_bits=8, quantize_output=True, **kwargs
    ):
        if not isinstance(layer, _AFFINE):
            raise ValueError(
                "Expected `layer` to be a BatchNormalization, Normalization "
                f"or Rescaling layer. Received: layer={layer!r}"
            )
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(
            quantize_output,
            activation_bits,
            **precision.float32_kwargs(kwargs, layer),
        )
        self.layer = layer

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        self._channels = input_shape[-1]
        self._kernel_quantizer = default_quantize_config.weight_quantizer(2)
        self._kernel_vars = build_quantizer(
            self._kernel_quantizer, (1, 1, self._channels, 1), "kernel", self
        )
        self.build_output_quantizer(input_shape)
        schedule_state.add_schedule_variables(
            self,
            batch_norm=isinstance(self.layer, keras.layers.BatchNormalization),
        )
        self.built = True

    def _scale_and_offset(self):
        layer, channels = self.layer, self._channels
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma = layer.gamma if layer.scale else ops.ones((channels,))
            beta = layer.beta if layer.center else ops.zeros((channels,))
            scale = gamma / ops.sqrt(layer.moving_variance + layer.epsilon)
            return scale, beta - layer.moving_mean * scale
        if isinstance(layer, keras.layers.Normalization):
            std = ops.maximum(
                ops.sqrt(ops.reshape(layer.variance, (-1,))),
                keras.backend.epsilon(),
            )
            scale = ops.ones((channels,)) / std
            mean = ops.reshape(layer.mean, (-1,))
            return scale, -mean * scale
        ones = ops.ones((channels,))
        scale = ops.reshape(ops.cast(layer.scale, "float32"), (-1,)) * ones
        offset = ops.reshape(ops.cast(layer.offset, "float32"), (-1,)) * ones
        return scale, offset

    def _quantized_kernel(self, training):
        """The fake-quantized 1x1 depthwise kernel and the offset."""
        scale, offset = self._scale_and_offset()
        kernel = schedule_state.quantize(
            self,
            self._kernel_quantizer,
            ops.reshape(scale, (1, 1, self._channels, 1)),
            training,
            self._kernel_vars,
        )
        return kernel, offset

    def _affine(self, inputs, training):
        """`inputs * scale + offset` per channel, as a 1x1 depthwise conv."""
        kernel, offset = self._quantized_kernel(training)
        shape = inputs.shape
        if len(shape) == 4:
            images = inputs
        else:
            middle = math.prod(shape[1:-1]) if len(shape) > 2 else 1
            images = ops.reshape(inputs, (-1, 1, middle, shape[-1]))
        outputs = ops.depthwise_conv(images, kernel, padding="valid") + offset
        if len(shape) != 4:
            outputs = ops.reshape(outputs, (-1,) + tuple(shape[1:]))
        return outputs

    def call(self, inputs, training=None, mask=None):
        if training and isinstance(self.layer, keras.layers.BatchNormalization):
            # Statistics first, so the kernel range stored in training is
            # the range of the kernel used at inference.
            # `frozen`: a Python bool when fixed for this trace.
            frozen = schedule_state.flag(self, schedule_state.BN_FROZEN)
            if frozen is True:
                outputs = self._affine(inputs, training)
            elif frozen is False:
                outputs = batch_normalize(self.layer, inputs, frozen)
                # The kernel range still tracks the folded statistics.
                self._quantized_kernel(training)
            else:
                normalized = batch_normalize(self.layer, inputs, frozen)
                outputs = ops.where(
                    frozen, self._affine(inputs, training), normalized
                )
        else:
            outputs = self._affine(inputs, training)
        return self.quantized_output(outputs, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "layer": keras.saving.serialize_keras_object(self.layer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        (layer,), config = pop_objects(config, ("layer",), custom_objects)
        return cls(layer, **config)
