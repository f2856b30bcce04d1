"""QAT configs for the layers of attention models (`Embedding`)."""

import keras

from keras_tflq.argument_checks import check_one_of
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    ACTIVATION_BITS,
)
from keras_tflq.quantization.default_scheme.weights_only_config import (
    WeightsOnlyQuantizeConfig,
)
from keras_tflq.quantization.quantizers import LastValueQuantizer

_PACKAGE = "keras_tflq"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EmbeddingQuantizeConfig(WeightsOnlyQuantizeConfig):
    """QAT of an `Embedding` table as TFLite stores it: int8, per tensor.

    The table is fake-quantized symmetric and narrow-range; the layer's
    output needs no range of its own: TFLite's `GATHER` gives its output
    the table's scale. With 16-bit activations the table is int16: the
    lookup's output is the next layer's 16-bit input, and TFLite's 16x8
    mode quantizes a `GATHER` table as an activation (an int8 table would
    feed int8 values to the 16-bit ops after it).

    Args:
        activation_bits: 8 for int8, 16 for TFLite's 16x8 mode (an int16
            table). Defaults to `8`.

    Example:

    ```python
    import keras, keras_tflq as tflq
    from keras_tflq.quantization.default_scheme.attention_configs import (
        EmbeddingQuantizeConfig,
    )

    embedding = tflq.quantize_annotate_layer(
        keras.layers.Embedding(17, 8), EmbeddingQuantizeConfig())
    ```
    """

    def __init__(self, activation_bits=8):
        check_one_of("activation_bits", activation_bits, ACTIVATION_BITS)
        self.activation_bits = activation_bits

    def get_weights_and_quantizers(self, layer):
        if not isinstance(layer, keras.layers.Embedding):
            raise ValueError(
                "Expected `layer` to be an Embedding layer. Received: "
                f"layer={layer.name!r} of type {type(layer).__name__}"
            )
        quantizer = LastValueQuantizer(
            num_bits=self.activation_bits,
            per_axis=False,
            symmetric=True,
            narrow_range=True,
        )
        return [(layer.embeddings, quantizer)]

    def get_config(self):
        return {"activation_bits": self.activation_bits}
