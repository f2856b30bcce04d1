"""QAT configs for the layers of attention models (`Embedding`)."""

import keras

from keras_tflq.quantization.default_scheme.weights_only_config import (
    WeightsOnlyQuantizeConfig,
)
from keras_tflq.quantization.quantizers import LastValueQuantizer

_PACKAGE = "keras_tflq"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EmbeddingQuantizeConfig(WeightsOnlyQuantizeConfig):
    """QAT of an `Embedding` table as TFLite stores it: int8, per tensor.

    The table is fake-quantized symmetric and narrow-range; the layer's
    output needs no range of its own: TFLite's int8 `GATHER` gives its
    output the table's scale.

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

    def get_weights_and_quantizers(self, layer):
        if not isinstance(layer, keras.layers.Embedding):
            raise ValueError(
                "Expected `layer` to be an Embedding layer. Received: "
                f"layer={layer.name!r} of type {type(layer).__name__}"
            )
        quantizer = LastValueQuantizer(
            num_bits=8, per_axis=False, symmetric=True, narrow_range=True
        )
        return [(layer.embeddings, quantizer)]

    def get_config(self):
        return {}
