"""`QuantizeAnnotate`: marks a layer for quantization, changing nothing else."""

import keras

from keras_tflq.quantization.serialization import pop_objects


@keras.saving.register_keras_serializable(package="keras_tflq")
class QuantizeAnnotate(keras.layers.Wrapper):
    """Marks `layer` to be quantized by `quantize_apply`; runs it unchanged.

    Built by `keras_tflq.quantize_annotate_layer`; the wrapped layer is
    called as is, so an annotated model trains and predicts exactly like
    the float model until `quantize_apply` is called.

    Args:
        layer: the layer to annotate.
        quantize_config: a `keras_tflq.QuantizeConfig`, or `None` for the
            default scheme's config. Defaults to `None`.
        **kwargs: base layer arguments.

    Example:

    ```python
    import keras
    annotated = QuantizeAnnotate(keras.layers.Dense(4))
    y = annotated(keras.ops.ones((2, 3)))
    ```
    """

    def __init__(self, layer, quantize_config=None, **kwargs):
        kwargs.setdefault("name", f"annotate_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config

    def call(self, inputs, *args, **kwargs):
        return self.layer(inputs, *args, **kwargs)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        config = {**super().get_config()}
        if self.quantize_config is not None:
            config["quantize_config"] = keras.saving.serialize_keras_object(
                self.quantize_config
            )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        (layer, quantize_config), config = pop_objects(
            config, ("layer", "quantize_config"), custom_objects
        )
        return cls(layer, quantize_config, **config)
