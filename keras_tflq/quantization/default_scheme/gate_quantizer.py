"""`GateQuantizer`: one int8 range per gate of a recurrent kernel."""

import keras
from keras import ops

from keras_tflq.argument_checks import check_positive_int
from keras_tflq.quantization.fake_quant import fake_quant
from keras_tflq.quantization.quantizers import LastValueQuantizer

_PACKAGE = "keras_tflq"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GateQuantizer(LastValueQuantizer):
    """Quantizes a recurrent kernel with one symmetric range per gate.

    A Keras `LSTM` keeps its four gates' weights side by side in one
    kernel, `(inputs, 4 * units)`. TFLite's fused
    `UNIDIRECTIONAL_SEQUENCE_LSTM` holds them as four int8 tensors, and
    the converter quantizes each with its own max-abs scale (symmetric,
    narrow range). This quantizer rounds each gate's block of columns to
    that block's grid, so that the QAT model computes with the kernels
    the fused op will hold. The range is the latest value's, as in
    `LastValueQuantizer`.

    Args:
        gates: how many equal blocks of columns the kernel holds.
            Defaults to `4` (an LSTM's input, forget, cell and output
            gates).
        num_bits: bit width of the quantized values, 2 to 16.
            Defaults to `8`.

    Example:

    >>> quantizer = GateQuantizer(gates=2)
    >>> kernel = keras.ops.convert_to_tensor([[1.0, 0.3, 0.1, 0.03]])
    >>> owner = keras.layers.Layer()
    >>> weights = quantizer.build((1, 4), "kernel", owner)
    >>> quantized = quantizer(kernel, True, weights)
    >>> steps = quantized[0] * 127 / keras.ops.array([1.0, 1.0, 0.1, 0.1])
    >>> [round(float(step)) for step in steps]  # each gate on its own grid
    [127, 38, 127, 38]
    """

    def __init__(self, gates=4, num_bits=8):
        check_positive_int("gates", gates, type(self).__name__)
        super().__init__(
            num_bits=num_bits, per_axis=True, symmetric=True, narrow_range=True
        )
        self.gates = gates

    def _range_shape(self, tensor_shape):
        columns = None if tensor_shape is None else tensor_shape[-1]
        if columns is None or columns % self.gates:
            raise ValueError(
                f"Expected a kernel whose last axis splits into {self.gates} "
                "gates of equal size. Received: "
                f"tensor_shape={tensor_shape}"
            )
        return (self.gates,)

    def _batch_range(self, x):
        blocks = ops.reshape(x, (-1, self.gates, x.shape[-1] // self.gates))
        bound = ops.max(ops.abs(blocks), axis=(0, 2))
        bound = ops.maximum(bound, 1e-6)
        return -bound, bound

    def __call__(self, inputs, training, weights, **kwargs):
        range_min, range_max = self.compute_range(
            inputs, training, weights, kwargs.get("ranges_frozen")
        )
        width = inputs.shape[-1] // self.gates
        return fake_quant(
            inputs,
            ops.repeat(range_min, width),
            ops.repeat(range_max, width),
            num_bits=self.num_bits,
            narrow_range=True,
            axis=-1,
            training=bool(training),
            symmetric=True,
        )

    def get_config(self):
        return {"gates": self.gates, "num_bits": self.num_bits}
