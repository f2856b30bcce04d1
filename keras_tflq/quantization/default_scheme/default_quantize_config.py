"""`DefaultQuantizeConfig`: the per-layer config of the default scheme."""

import keras

from keras_tflq.argument_checks import check_one_of
from keras_tflq.quantization import quantizers
from keras_tflq.quantization.default_scheme.fixed_range import (
    FixedRangeQuantizer,
)
from keras_tflq.quantization.default_scheme.fixed_range import (
    fixed_output_range,
)
from keras_tflq.quantization.quantize_config import QuantizeConfig

# 8 for int8, 16 for TFLite's 16x8 mode.
ACTIVATION_BITS = (8, 16)


def activation_quantizer(activation_bits):
    """The activation quantizer of the default scheme.

    8-bit activations are asymmetric (TFLite int8); 16-bit ones symmetric
    with a narrow range, so the int16 zero point is exactly 0 as the
    16x8 kernels require.
    """
    sixteen = activation_bits == 16
    return quantizers.MovingAverageQuantizer(
        num_bits=activation_bits,
        per_axis=False,
        symmetric=sixteen,
        narrow_range=sixteen,
    )


def weight_quantizer(axis):
    """8-bit symmetric narrow-range weights, per channel along `axis`."""
    return quantizers.LastValueQuantizer(
        num_bits=8,
        per_axis=axis is not None,
        symmetric=True,
        narrow_range=True,
        axis=-1 if axis is None else axis,
    )


@keras.saving.register_keras_serializable(package="keras_tflq")
class DefaultQuantizeConfig(QuantizeConfig):
    """Quantizes named weights and, optionally, the layer output.

    Args:
        weight_attrs: names of the layer attributes holding the weights to
            quantize (`["kernel"]`). Defaults to `()`.
        weight_axes: per weight, the channel axis for per-channel
            quantization, or `None` for per-tensor. Defaults to all `None`.
        quantize_output: whether to fake-quantize the layer output with
            a learned range. With 16-bit activations, the output of a
            sigmoid or tanh (`activation=` or an `Activation` layer) is
            always fake-quantized on TFLite's fixed int16 grid (scale
            1/32768, zero point 0), which its int16 kernels require.
            Defaults to `True`.
        activation_bits: 8 or 16. Defaults to `8`.

    Example:

    >>> config = DefaultQuantizeConfig(["kernel"], [None])
    >>> config.get_config()["weight_attrs"]
    ['kernel']
    """

    def __init__(
        self,
        weight_attrs=(),
        weight_axes=None,
        quantize_output=True,
        activation_bits=8,
    ):
        weight_attrs = list(weight_attrs)
        weight_axes = (
            [None] * len(weight_attrs)
            if weight_axes is None
            else list(weight_axes)
        )
        if len(weight_axes) != len(weight_attrs):
            raise ValueError(
                "Expected one entry of `weight_axes` per weight attribute. "
                f"Received: weight_axes={weight_axes}, "
                f"weight_attrs={weight_attrs}"
            )
        check_one_of("activation_bits", activation_bits, ACTIVATION_BITS)
        self.weight_attrs = weight_attrs
        self.weight_axes = weight_axes
        self.quantize_output = bool(quantize_output)
        self.activation_bits = activation_bits

    def get_weights_and_quantizers(self, layer):
        return [
            (getattr(layer, name), weight_quantizer(axis))
            for name, axis in zip(
                self.weight_attrs, self.weight_axes, strict=True
            )
        ]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pairs = zip(self.weight_attrs, quantize_weights, strict=True)
        for name, value in pairs:
            setattr(layer, name, value)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        fixed = fixed_output_range(layer, self.activation_bits)
        if fixed is not None:
            return [FixedRangeQuantizer(*fixed, self.activation_bits)]
        if not self.quantize_output:
            return []
        return [activation_quantizer(self.activation_bits)]

    def get_config(self):
        return {
            "weight_attrs": list(self.weight_attrs),
            "weight_axes": list(self.weight_axes),
            "quantize_output": self.quantize_output,
            "activation_bits": self.activation_bits,
        }
