"""TFLite's fixed output grids of sigmoid, tanh and softmax, and
`FixedRangeQuantizer`, which fake-quantizes on such a grid."""

import keras

from keras_tflq.argument_checks import check_one_of
from keras_tflq.quantization.fake_quant import fake_quant
from keras_tflq.quantization.quantizer_base import Quantizer

_PACKAGE = "keras_tflq"

# The float range of TFLite's fixed-scale activation outputs, by bits:
# int8 LOGISTIC (scale 1/256, zero point -128), TANH (1/128, 0); int16
# both 1/32768, zero point 0; SOFTMAX int8 1/256 (zero point -128), int16
# 1/32768 (zero point 0).
FIXED_RANGES = {
    ("sigmoid", 8): (0.0, 255.0 / 256.0),
    ("tanh", 8): (-1.0, 127.0 / 128.0),
    ("sigmoid", 16): (-1.0, 32767.0 / 32768.0),
    ("tanh", 16): (-1.0, 32767.0 / 32768.0),
    ("softmax", 8): (0.0, 255.0 / 256.0),
    ("softmax", 16): (-1.0, 32767.0 / 32768.0),
}
# The activations whose 16-bit output grid the model itself must set: the
# converter gives an int16 LOGISTIC or TANH without a fake-quantized output
# the range of its float output (int16 LOGISTIC: scale 2^-16, zero point
# -32768), which their int16 kernels refuse ("output->params.scale ==
# 1. / 32768 was not true"). It sets the int8 grids, and SOFTMAX's, itself.
SIXTEEN_BIT_FIXED_ACTIVATIONS = ("sigmoid", "tanh")



@keras.saving.register_keras_serializable(package=_PACKAGE)
class FixedRangeQuantizer(Quantizer):
    """Fake quantization with a fixed range: no variables, no statistics.

    TFLite gives the outputs of `LOGISTIC` and `TANH` a fixed scale; this
    quantizer rounds to that grid (`FIXED_RANGES`).

    Args:
        range_min: the lowest representable value.
        range_max: the highest representable value.
        num_bits: 8 or 16. Defaults to `8`.

    Example:

    >>> quantizer = FixedRangeQuantizer(0.0, 255.0 / 256.0)
    >>> float(quantizer(keras.ops.ones((1,)) * 0.3, False, {})[0]) * 256
    77.0
    """

    def __init__(self, range_min, range_max, num_bits=8):
        check_one_of("num_bits", num_bits, (8, 16))
        if not float(range_min) < float(range_max):
            raise ValueError(
                "Expected `range_min` to be below `range_max`. Received: "
                f"range_min={range_min!r}, range_max={range_max!r}"
            )
        self.range_min = float(range_min)
        self.range_max = float(range_max)
        self.num_bits = num_bits

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        return fake_quant(
            inputs,
            self.range_min,
            self.range_max,
            num_bits=self.num_bits,
            narrow_range=False,
            axis=None,
        )

    def get_config(self):
        return {
            "range_min": self.range_min,
            "range_max": self.range_max,
            "num_bits": self.num_bits,
        }


def fixed_output_range(layer, activation_bits):
    """The fixed range `layer`'s output must be fake-quantized to, or None.

    A layer whose activation (`activation=`, or an `Activation` layer) is
    sigmoid or tanh runs as TFLite's `LOGISTIC` or `TANH` last; in 16-bit
    activations their int16 kernels accept only the fixed output grid
    (scale 1/32768, zero point 0), so the model sets it.

    Args:
        layer: a Keras layer.
        activation_bits: 8 or 16.

    Returns:
        `(range_min, range_max)`, or None (no fixed range to set).

    Example:

    >>> layer = keras.layers.Activation("sigmoid")
    >>> fixed_output_range(layer, 16)
    (-1.0, 0.999969482421875)
    """
    activation = getattr(layer, "activation", None)
    if activation_bits != 16 or activation is None:
        return None
    name = keras.activations.serialize(activation)
    if name not in SIXTEEN_BIT_FIXED_ACTIVATIONS:
        return None
    return FIXED_RANGES[(name, activation_bits)]
