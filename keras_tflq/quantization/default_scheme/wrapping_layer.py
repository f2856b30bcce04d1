"""`WrappingSchemeLayer`: a scheme layer that runs one Keras layer's ops."""

import keras

from keras_tflq.quantization import precision
from keras_tflq.quantization.default_scheme.base_layer import SchemeLayer


class WrappingSchemeLayer(SchemeLayer, keras.layers.Wrapper):
    """A `SchemeLayer` that computes, quantized, what `layer` computes.

    It is a `keras.layers.Wrapper`, so the export finds the wrapped layer
    (a `MultiHeadAttention` or `LayerNormalization` asks for the batch-1
    export) and the config serializes it. Subclasses set `wrapped_class`
    and read the weights of `self.layer`.

    Args:
        layer: an instance of `wrapped_class`.
        quantize_output: fake-quantize the output. Defaults to `True`.
        activation_bits: 8 or 16. Defaults to `8`.
        **kwargs: base layer arguments.
    """

    wrapped_class = keras.layers.Layer

    def __init__(
        self, layer, quantize_output=True, activation_bits=8, **kwargs
    ):
        if not isinstance(layer, self.wrapped_class):
            raise ValueError(
                f"Expected `layer` to be a {self.wrapped_class.__name__} "
                f"layer. Received: layer={layer!r}"
            )
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(
            quantize_output,
            activation_bits,
            layer=layer,
            **precision.float32_kwargs(kwargs, layer),
        )
