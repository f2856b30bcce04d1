"""Quantization-aware training for Keras 3: annotate, configure, apply."""

from keras_tflq.quantization import quantizers
from keras_tflq.quantization.default_scheme.attention_configs import (
    EmbeddingQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (
    RecurrentQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (
    RecurrentWeightsQuantizeConfig,
)
from keras_tflq.quantization.quantize import is_quantized_model
from keras_tflq.quantization.quantize import quantize_annotate_layer
from keras_tflq.quantization.quantize import quantize_annotate_model
from keras_tflq.quantization.quantize import quantize_apply
from keras_tflq.quantization.quantize import quantize_model
from keras_tflq.quantization.quantize_config import QuantizeConfig

__all__ = [
    "EmbeddingQuantizeConfig",
    "QuantizeConfig",
    "RecurrentQuantizeConfig",
    "RecurrentWeightsQuantizeConfig",
    "is_quantized_model",
    "quantize_annotate_layer",
    "quantize_annotate_model",
    "quantize_apply",
    "quantize_model",
    "quantizers",
]
