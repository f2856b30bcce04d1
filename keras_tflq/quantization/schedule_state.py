"""The variables a `QuantizationSchedule` sets on every quantizing layer.

They are variables, not Python flags, so a schedule changes them during
`fit()` without retracing the compiled train step.

Gating on them costs ops in every training step, so it is only traced in
where a variable can change under the trace: for the variables a
`QuantizationSchedule` drives (it marks them on the layers with
`mark_scheduled()`), or whose value cannot be read when the step is traced.
Otherwise the value read when the step is traced (or, eagerly, at the call)
decides the branch in Python: a model without a schedule traces no gating
ops, and one reloaded with non-default values still honours them. A value
assigned by hand after a train step was traced takes effect once the step
is traced again (`model.make_train_function(force=True)`).
"""

import keras
from keras import ops

QUANTIZE_ENABLED = "quantize_enabled"
RANGES_FROZEN = "ranges_frozen"
BN_FROZEN = "bn_frozen"
NAMES = (QUANTIZE_ENABLED, RANGES_FROZEN, BN_FROZEN)


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


def mark_scheduled(layer, names):
    """Makes the traced steps of `layer` gate on the variables `names`.

    Returns whether this adds any (a traced step must then be retraced).
    """
    scheduled = layer.__dict__.get("_tflq_scheduled", frozenset())
    updated = scheduled | frozenset(names)
    object.__setattr__(layer, "_tflq_scheduled", updated)
    return updated != scheduled


def _known_value(variable):
    """The value of `variable` as a float, or None inside a trace that
    cannot read it (a stateless scope, a JAX trace)."""
    try:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            with tf.init_scope():
                return float(variable.value.numpy())
        return float(ops.convert_to_numpy(variable.value))
    except Exception:  # noqa: BLE001 - unknown: gate on the variable
        return None


def flag(layer, name):
    """`layer.<name> > 0.5`: a Python bool when it is fixed for the
    current trace (or eager call), else a boolean tensor."""
    variable = getattr(layer, name)
    if name not in layer.__dict__.get("_tflq_scheduled", ()):
        value = _known_value(variable)
        if value is not None:
            return value > 0.5
    return variable > 0.5


def quantize(layer, quantizer, inputs, training, weights):
    """`quantizer(inputs)` as the layer's schedule allows.

    In training, fake quantization applies only once `quantize_enabled` is
    set and ranges stop moving once `ranges_frozen` is set; at inference
    the learned ranges always apply, as in the converted model.
    """
    if not training:
        return quantizer(inputs, False, weights)
    frozen = flag(layer, RANGES_FROZEN)
    if frozen is False:
        quantized = quantizer(inputs, True, weights)
    else:
        quantized = quantizer(inputs, True, weights, ranges_frozen=frozen)
    return gate(layer, quantized, inputs)


def kernel_range(layer, quantizer, kernel, training, weights):
    """`quantizer.compute_range(kernel)` as the layer's schedule allows
    (the stored range once `ranges_frozen` is set)."""
    frozen = flag(layer, RANGES_FROZEN) if training else None
    return quantizer.compute_range(kernel, training, weights, frozen)


def gate(layer, quantized, inputs):
    """In training: `quantized` once `quantize_enabled` is set, else
    `inputs` (whose ranges the caller still tracked)."""
    enabled = flag(layer, QUANTIZE_ENABLED)
    if enabled is True:
        return quantized
    if enabled is False:
        return inputs
    return ops.where(enabled, quantized, inputs)


def schedule_variables(layer):
    """{name: variable} of the schedule variables `layer` holds."""
    return {
        name: getattr(layer, name)
        for name in NAMES
        if getattr(layer, name, None) is not None
    }
