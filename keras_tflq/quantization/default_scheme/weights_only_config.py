"""`WeightsOnlyQuantizeConfig`: the base of configs that quantize weights
and leave activations alone."""

from keras_tflq.quantization.quantize_config import QuantizeConfig


class WeightsOnlyQuantizeConfig(QuantizeConfig):
    """A `QuantizeConfig` with weight quantizers only.

    The wrapper substitutes the quantized tensors for the layer's weight
    variables, so nothing is assigned back, and no activation or output is
    quantized. Subclasses implement `get_weights_and_quantizers` and
    `get_config`; one that quantizes its output overrides
    `get_output_quantizers`.
    """

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []
