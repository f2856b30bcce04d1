"""QAT configs for recurrent layers (`LSTM`, `GRU`, `SimpleRNN`)."""

import keras

from keras_tflq.quantization.default_scheme.weights_only_config import (
    WeightsOnlyQuantizeConfig,
)
from keras_tflq.quantization.quantizers import LastValueQuantizer
from keras_tflq.quantization.quantizers import MovingAverageQuantizer

_PACKAGE = "keras_tflq"
_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RecurrentWeightsQuantizeConfig(WeightsOnlyQuantizeConfig):
    """QAT of a recurrent layer's weights: kernel and recurrent kernel.

    Both kernels are fake-quantized as TFLite's int8 LSTM and
    FullyConnected kernels are stored: symmetric, narrow-range, one range
    per tensor. The gate activations are not fake-quantized: the fused
    int8 `UNIDIRECTIONAL_SEQUENCE_LSTM` computes its gates with fixed
    16-bit ranges of its own, and the converter fails on fake-quant ops
    inside or around the fused op ("Failed to duplicate values for the
    stateful op"), so the layer's output keeps no range of its own either;
    the int8 export calibrates the layer's internal tensors and output
    (give the export calibration data, as for a float model).

    Use it with `quantize_annotate_layer` on `LSTM`, `GRU` or `SimpleRNN`;
    the rest of the model is annotated as usual.

    Args:
        weight_bits: bits of the kernels, 8 (TFLite's int8 spec).
            Defaults to `8`.

    Example:

    ```python
    import keras, keras_tflq as tflq
    from keras_tflq.quantization.default_scheme.sequence_configs import (
        RecurrentWeightsQuantizeConfig,
    )

    inputs = keras.Input((8, 8))
    x = tflq.quantize_annotate_layer(
        keras.layers.LSTM(16), RecurrentWeightsQuantizeConfig())(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    qat_model = tflq.quantize_model(model)
    ```
    """

    def __init__(self, weight_bits=8):
        if weight_bits != 8:
            raise ValueError(
                "Expected `weight_bits` to be 8 (TFLite's int8 recurrent "
                f"kernels). Received: weight_bits={weight_bits!r}"
            )
        self.weight_bits = weight_bits

    def get_weights_and_quantizers(self, layer):
        _check_recurrent(layer)
        cell = layer.cell
        return [
            (cell.kernel, self._weight_quantizer()),
            (cell.recurrent_kernel, self._weight_quantizer()),
        ]

    def get_config(self):
        return {"weight_bits": self.weight_bits}

    def _weight_quantizer(self):
        return LastValueQuantizer(
            num_bits=self.weight_bits,
            per_axis=False,
            symmetric=True,
            narrow_range=True,
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RecurrentQuantizeConfig(RecurrentWeightsQuantizeConfig):
    """QAT of a recurrent layer's weights and output range.

    As `RecurrentWeightsQuantizeConfig`, plus a moving-average range on the
    layer's output, for the layers exported unrolled (`GRU`, `SimpleRNN`,
    an `LSTM` with other activations, and every layer in `"int16x8"`),
    where the output feeds ordinary int8 ops.

    Args:
        weight_bits: bits of the kernels. Defaults to `8`.
        activation_bits: bits of the output range, 8 or 16.
            Defaults to `8`.

    Example:

    >>> config = RecurrentQuantizeConfig(activation_bits=16)
    """

    def __init__(self, weight_bits=8, activation_bits=8):
        super().__init__(weight_bits)
        if activation_bits not in (8, 16):
            raise ValueError(
                "Expected `activation_bits` to be 8 or 16. "
                f"Received: activation_bits={activation_bits!r}"
            )
        self.activation_bits = activation_bits

    def get_output_quantizers(self, layer):
        return [
            MovingAverageQuantizer(
                num_bits=self.activation_bits,
                per_axis=False,
                symmetric=self.activation_bits == 16,
                narrow_range=False,
            )
        ]

    def get_config(self):
        return {**super().get_config(), "activation_bits": self.activation_bits}


def _check_recurrent(layer):
    if not isinstance(layer, _RECURRENT):
        raise ValueError(
            "Expected `layer` to be an LSTM, GRU or SimpleRNN layer. "
            f"Received: layer={layer.name!r} of type {type(layer).__name__}"
        )
