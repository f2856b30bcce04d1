"""`SchemeLayer`: the base of the default scheme's own quantizing layers."""

import keras

from keras_tflq.argument_checks import check_one_of
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.quantizer_base import build_quantizer


class SchemeLayer(keras.layers.Layer):
    """A layer the default scheme builds to run other layers quantized.

    The protocol the plan, the rewrite and the schedule rely on:

    - `quantize_output` (bool): whether the layer fake-quantizes its
      output (`False` when TFLite gives the output no range of its own,
      such as before a fused ReLU). The plan decides it.
    - `activation_bits` (8 or 16): the bit width of that output.
    - `build_output_quantizer(output_shape)`, called from `build()` after
      the layer's other variables: creates the output quantizer and its
      range variables (none when `quantize_output` is `False`).
    - `quantized_output(outputs, training)`, called at the end of
      `call()`: the outputs through that quantizer, as the schedule
      variables (`schedule_state.add_schedule_variables`) allow.

    Args:
        quantize_output: fake-quantize the output. Defaults to `True`.
        activation_bits: 8 or 16. Defaults to `8`.
        **kwargs: base layer arguments.
    """

    def __init__(self, quantize_output=True, activation_bits=8, **kwargs):
        check_one_of(
            "activation_bits",
            activation_bits,
            default_quantize_config.ACTIVATION_BITS,
        )
        super().__init__(**kwargs)
        self.quantize_output = bool(quantize_output)
        self.activation_bits = activation_bits
        self.output_quantizer = None
        self._output_vars = None

    def build_output_quantizer(self, output_shape):
        """Creates the output quantizer and its variables on this layer."""
        if not self.quantize_output:
            return
        self.output_quantizer = default_quantize_config.activation_quantizer(
            self.activation_bits
        )
        self._output_vars = build_quantizer(
            self.output_quantizer, output_shape, "output", self
        )

    def quantized_output(self, outputs, training):
        """`outputs` through the output quantizer, if there is one."""
        if self.output_quantizer is None:
            return outputs
        return schedule_state.quantize(
            self, self.output_quantizer, outputs, training, self._output_vars
        )

    def get_config(self):
        return {
            **super().get_config(),
            "quantize_output": self.quantize_output,
            "activation_bits": self.activation_bits,
        }
