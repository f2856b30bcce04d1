"""`SoftmaxOutputQuantizer`: TFLite's fixed range on a softmax output."""

import keras

from keras_tflq.argument_checks import check_one_of
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme.fixed_range import FIXED_RANGES
from keras_tflq.quantization.fake_quant import fake_quant


def fixed_softmax_quant(layer, probabilities, training, activation_bits):
    """`probabilities` fake-quantized on TFLite's fixed softmax grid.

    In training the schedule of `layer` applies (no fake quantization
    before `quantize_enabled`); the range is fixed, nothing is learned.

    Args:
        layer: the layer holding the schedule variables.
        probabilities: a softmax output.
        training: whether this is a training call.
        activation_bits: 8 or 16.

    Returns:
        The fake-quantized probabilities.

    Example:

    >>> layer = SoftmaxOutputQuantizer()
    >>> layer.build((1, 4))
    >>> probabilities = keras.ops.softmax(keras.ops.ones((1, 4)))
    >>> p = fixed_softmax_quant(layer, probabilities, False, 8)
    """
    low, high = FIXED_RANGES[("softmax", activation_bits)]
    quantized = fake_quant(
        probabilities,
        keras.ops.convert_to_tensor(low),
        keras.ops.convert_to_tensor(high),
        num_bits=activation_bits,
        narrow_range=False,
        axis=None,
    )
    if not training:
        return quantized
    return schedule_state.gate(layer, quantized, probabilities)


@keras.saving.register_keras_serializable(package="keras_tflq")
class SoftmaxOutputQuantizer(keras.layers.Layer):
    """Fake-quantizes a softmax output with TFLite's fixed output range.

    TFLite's integer `SOFTMAX` does not take an output range from the
    model: int8 outputs have scale 1/256 and zero point -128, int16 ones
    scale 1/32768 and zero point 0. Placed after a `keras.ops.softmax` in
    a quantized model, this layer makes training see exactly those
    values (nothing is learned: the range is fixed).

    Args:
        activation_bits: 8 or 16. Defaults to `8`.
        **kwargs: base layer arguments.

    Example:

    >>> layer = SoftmaxOutputQuantizer()
    >>> y = layer(keras.ops.softmax(keras.ops.ones((1, 4))))
    """

    def __init__(self, activation_bits=8, **kwargs):
        check_one_of(
            "activation_bits",
            activation_bits,
            default_quantize_config.ACTIVATION_BITS,
        )
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.activation_bits = activation_bits

    def build(self, input_shape):
        schedule_state.add_schedule_variables(self)
        self.built = True

    def call(self, inputs, training=None):
        return fixed_softmax_quant(
            self, inputs, bool(training), self.activation_bits
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "activation_bits": self.activation_bits,
        }
