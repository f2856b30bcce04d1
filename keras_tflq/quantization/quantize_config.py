"""`QuantizeConfig`: which weights and activations of a layer to quantize."""

import abc


class QuantizeConfig(abc.ABC):
    """Says how to quantize one layer: the extension point for custom layers.

    The method names and meanings are tfmot's
    (`tfmot.quantization.keras.QuantizeConfig`), so a tfmot config ports by
    changing its imports. Register a subclass with
    `@keras.saving.register_keras_serializable()` and a model using it
    reloads with plain `keras.saving.load_model`.

    `set_quantize_weights(layer, quantize_weights)` may assign the quantized
    tensors to the layer attributes holding the weights
    (`layer.kernel = quantize_weights[0]`) even where Keras 3 makes the
    attribute read-only: the wrapper passes a recorder in place of the layer
    and substitutes the tensors for those variables during the call.

    Example:

    ```python
    import keras
    import keras_tflq as tflq
    from keras_tflq import quantizers

    @keras.saving.register_keras_serializable()
    class DenseConfig(tflq.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, quantizers.LastValueQuantizer(
                num_bits=8, per_axis=False, symmetric=True,
                narrow_range=True))]

        def get_activations_and_quantizers(self, layer):
            return [(layer.activation, quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False,
                narrow_range=False))]

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            layer.activation = quantize_activations[0]

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    layer = tflq.quantize_annotate_layer(keras.layers.Dense(4), DenseConfig())
    ```
    """

    @abc.abstractmethod
    def get_weights_and_quantizers(self, layer):
        """Returns `[(weight_variable, quantizer), ...]` for `layer`."""

    @abc.abstractmethod
    def get_activations_and_quantizers(self, layer):
        """Returns `[(activation_callable, quantizer), ...]` for `layer`."""

    @abc.abstractmethod
    def set_quantize_weights(self, layer, quantize_weights):
        """Replaces the layer's weights by the quantized tensors, in order."""

    @abc.abstractmethod
    def set_quantize_activations(self, layer, quantize_activations):
        """Replaces the layer's activations by the quantize-aware ones."""

    @abc.abstractmethod
    def get_output_quantizers(self, layer):
        """Returns the quantizers applied to the layer's outputs, in order."""

    @abc.abstractmethod
    def get_config(self):
        """Returns the constructor arguments as a dict."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)
