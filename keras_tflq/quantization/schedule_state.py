"""The variables a `QuantizationSchedule` sets on every quantizing layer.

They are variables, not Python flags, so a schedule changes them during
`fit()` without retracing the compiled train step.
"""

from keras import ops

QUANTIZE_ENABLED = "quantize_enabled"
RANGES_FROZEN = "ranges_frozen"
BN_FROZEN = "bn_frozen"


def add_schedule_variables(layer, batch_norm=False):
    """Adds `quantize_enabled` (1), `ranges_frozen` (0) and, for a layer
    holding a BatchNormalization, `bn_frozen` (0) to `layer`."""
    layer.quantize_enabled = layer.add_weight(
        name=QUANTIZE_ENABLED, shape=(), initializer="ones", trainable=False
    )
    layer.ranges_frozen = layer.add_weight(
        name=RANGES_FROZEN, shape=(), initializer="zeros", trainable=False
    )
    if batch_norm:
        layer.bn_frozen = layer.add_weight(
            name=BN_FROZEN, shape=(), initializer="zeros", trainable=False
        )


def quantize(layer, quantizer, inputs, training, weights):
    """`quantizer(inputs)` as the layer's schedule allows.

    In training, fake quantization applies only once `quantize_enabled` is
    set and ranges stop moving once `ranges_frozen` is set; at inference
    the learned ranges always apply, as in the converted model.
    """
    if not training:
        return quantizer(inputs, False, weights)
    frozen = layer.ranges_frozen > 0.5
    quantized = quantizer(inputs, True, weights, ranges_frozen=frozen)
    return ops.where(layer.quantize_enabled > 0.5, quantized, inputs)


def quantize_output(layer, outputs, training):
    """`outputs` through the layer's `_output_quantizer`, if it has one."""
    if layer._output_quantizer is None:
        return outputs
    return quantize(
        layer, layer._output_quantizer, outputs, training, layer._output_vars
    )


def schedule_variables(layer):
    """{name: variable} of the schedule variables `layer` holds."""
    names = (QUANTIZE_ENABLED, RANGES_FROZEN, BN_FROZEN)
    return {
        name: getattr(layer, name)
        for name in names
        if getattr(layer, name, None) is not None
    }
