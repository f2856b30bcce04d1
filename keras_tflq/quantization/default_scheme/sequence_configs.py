"""QAT configs for recurrent layers (`LSTM`, `GRU`, `SimpleRNN`), alone or
in a `Bidirectional` wrapper, and for a layer inside `TimeDistributed`.

What TFLite's int8 kernels compute, and so what the configs simulate:

- an unrolled cell (`GRU`, `SimpleRNN`, an LSTM the export unrolls) runs
  as int8 ops; `LOGISTIC` outputs have TFLite's fixed scale 1/256 (zero
  point -128) and `TANH` outputs 1/128 (zero point 0), in 16x8 both
  1/32768. The gate activations are fake-quantized with exactly those
  ranges, the kernels int8 per tensor, the output with a learned range.
- the fused int8 `UNIDIRECTIONAL_SEQUENCE_LSTM` computes its gates in
  int16 (pre-activations with scale 2^-12, sigmoid/tanh outputs 2^-15):
  the gates are fake-quantized to 16 bits. It holds each gate's weights
  as an int8 tensor of its own scale: the kernels get one range per
  gate. Its cell state (int16, a power-of-two scale) and its recurrent
  input and output (int8; the export puts them on one grid) are set by
  the converter from calibration statistics only (its LSTM quantization
  pattern runs in post-training quantization only), so the export
  calibrates them; see docs/quantization.md.
"""

import keras

from keras_tflq.quantization.default_scheme.default_quantize_config import (
    activation_quantizer,
)
from keras_tflq.quantization.default_scheme.fixed_range import FIXED_RANGES
from keras_tflq.quantization.default_scheme.fixed_range import (
    FixedRangeQuantizer,
)
from keras_tflq.quantization.default_scheme.gate_quantizer import GateQuantizer
from keras_tflq.quantization.default_scheme.weights_only_config import (
    WeightsOnlyQuantizeConfig,
)
from keras_tflq.quantization.quantize_config import QuantizeConfig
from keras_tflq.quantization.quantizers import LastValueQuantizer

_PACKAGE = "keras_tflq"
_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)
_GATE_ATTRIBUTES = ("recurrent_activation", "activation")
# The fused int8 LSTM's gate pre-activations: int16, scale 2^-12 (Q3.12).
_FUSED_GATE_INPUT = (-8.0, 8.0 - 2.0**-12)


def fusable_lstm(layer):
    """Whether TFLite's fused LSTM kernel computes exactly what `layer` does
    (the export then runs it as `UNIDIRECTIONAL_SEQUENCE_LSTM`)."""
    if type(layer) is not keras.layers.LSTM:
        return False
    cell = layer.cell
    return (
        cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and not layer.stateful
        and not layer.return_state
    )


def recurrent_layers_of(layer):
    """`[(attribute path, recurrent layer)]` of an `LSTM`, `GRU` or
    `SimpleRNN` (path `""`) or of both directions of a `Bidirectional`
    wrapping them; None for any other layer."""
    if isinstance(layer, keras.layers.Bidirectional):
        inner = [
            ("forward_layer.", layer.forward_layer),
            ("backward_layer.", layer.backward_layer),
        ]
    else:
        inner = [("", layer)]
    if not all(isinstance(rnn, _RECURRENT) for _, rnn in inner):
        return None
    return inner


def _check_recurrent(layer):
    found = recurrent_layers_of(layer)
    if found is None:
        raise ValueError(
            "Expected `layer` to be an LSTM, GRU or SimpleRNN layer, or a "
            "Bidirectional wrapper of one. Received: "
            f"layer={layer.name!r} of type {type(layer).__name__}"
        )
    return found


def _activation_name(function):
    if function is None:
        return None
    name = keras.activations.serialize(function)
    return name if isinstance(name, str) else None


def _weight_quantizer(weight_bits):
    return LastValueQuantizer(
        num_bits=weight_bits, per_axis=False, symmetric=True, narrow_range=True
    )


def _check_weight_bits(weight_bits):
    if weight_bits != 8:
        raise ValueError(
            "Expected `weight_bits` to be 8 (TFLite's int8 recurrent "
            f"kernels). Received: weight_bits={weight_bits!r}"
        )
    return weight_bits


def _kernels(layer, weight_bits, activation_bits=8):
    """The kernels' quantizers: one range per gate for an LSTM the int8
    export fuses (the fused op holds each gate's weights as an int8
    tensor of its own scale), one per tensor for an unrolled cell."""
    pairs = []
    for _, rnn in _check_recurrent(layer):
        fused = activation_bits == 8 and fusable_lstm(rnn)
        for variable in (rnn.cell.kernel, rnn.cell.recurrent_kernel):
            if fused:
                quantizer = GateQuantizer(gates=4, num_bits=weight_bits)
            else:
                quantizer = _weight_quantizer(weight_bits)
            pairs.append((variable, quantizer))
    return pairs


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RecurrentWeightsQuantizeConfig(WeightsOnlyQuantizeConfig):
    """QAT of a recurrent layer's weights: kernel and recurrent kernel.

    Both kernels are fake-quantized as TFLite's int8 LSTM and
    FullyConnected kernels are stored: symmetric, narrow-range, one range
    per tensor (per gate for an LSTM the int8 export fuses: the fused op
    holds each gate's weights as a tensor of its own scale). No
    activation is quantized: the int8 export calibrates the layer's
    internal tensors and output (give the export calibration data, as
    for a float model). `RecurrentQuantizeConfig`, which
    `quantize_model` uses, also simulates the gates and the output.

    Use it with `quantize_annotate_layer` on `LSTM`, `GRU` or `SimpleRNN`
    (or a `Bidirectional` wrapper of one).

    Args:
        weight_bits: bits of the kernels, 8 (TFLite's int8 spec).
            Defaults to `8`.

    Example:

    ```python
    import keras, keras_tflq as tflq

    inputs = keras.Input((8, 8))
    x = tflq.quantize_annotate_layer(
        keras.layers.LSTM(16), tflq.RecurrentWeightsQuantizeConfig())(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    qat_model = tflq.quantize_model(model)
    ```
    """

    def __init__(self, weight_bits=8):
        self.weight_bits = _check_weight_bits(weight_bits)

    def get_weights_and_quantizers(self, layer):
        return _kernels(layer, self.weight_bits)

    def get_config(self):
        return {"weight_bits": self.weight_bits}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RecurrentQuantizeConfig(QuantizeConfig):
    """QAT of a recurrent layer as TFLite's integer kernels compute it.

    The default scheme's config for `LSTM`, `GRU`, `SimpleRNN` and a
    `Bidirectional` wrapper of them (`quantize_model` uses it):

    - kernel and recurrent kernel: int8, symmetric, narrow range, per
      tensor, or per gate for an LSTM the int8 export fuses
      (`GateQuantizer`);
    - the gate activations (`sigmoid`, `tanh`): TFLite's fixed output
      ranges, in int8 for the layers the export unrolls (scale 1/256 for
      sigmoid, 1/128 for tanh) and in int16 (1/32768) for an LSTM the
      int8 export fuses (the fused kernel's gates are int16) and in
      16-bit activations;
    - the output: a moving-average range (`activation_bits`), except a
      `SimpleRNN` whose activation already has a fixed range.

    Args:
        weight_bits: bits of the kernels, 8. Defaults to `8`.
        activation_bits: bits of the activations, 8 or 16.
            Defaults to `8`.
        quantize_output: give the output a range of its own.
            Defaults to `True`.

    Example:

    ```python
    import keras, keras_tflq as tflq

    inputs = keras.Input((8, 8))
    x = tflq.quantize_annotate_layer(
        keras.layers.GRU(16), tflq.RecurrentQuantizeConfig())(inputs)
    qat_model = tflq.quantize_apply(
        keras.Model(inputs, keras.layers.Dense(10)(x)))
    ```
    """

    def __init__(self, weight_bits=8, activation_bits=8, quantize_output=True):
        self.weight_bits = _check_weight_bits(weight_bits)
        if activation_bits not in (8, 16):
            raise ValueError(
                "Expected `activation_bits` to be 8 or 16. "
                f"Received: activation_bits={activation_bits!r}"
            )
        self.activation_bits = activation_bits
        self.quantize_output = bool(quantize_output)

    def get_weights_and_quantizers(self, layer):
        return _kernels(layer, self.weight_bits, self.activation_bits)

    def get_activations_and_quantizers(self, layer):
        """Per recurrent layer: two pairs per gate, its input (`linear`
        with a learned range, or the fused kernel's fixed 2^-12 scale)
        and its output (the activation, TFLite's fixed range)."""
        _check_recurrent(layer)
        pairs = []
        for _, rnn in _inner_layers(layer):
            fused = self.activation_bits == 8 and fusable_lstm(rnn)
            for _, function in _gates(rnn):
                if fused:  # the fused int8 kernel's gates: int16
                    bits = 16
                    before = FixedRangeQuantizer(*_FUSED_GATE_INPUT, bits)
                else:
                    bits = self.activation_bits
                    before = activation_quantizer(bits)
                fixed = FIXED_RANGES[(_activation_name(function), bits)]
                pairs.append((keras.activations.linear, before))
                pairs.append((function, FixedRangeQuantizer(*fixed, bits)))
            if fused:
                # The fused kernel's output (and next recurrent input) `h`
                # is int8 with a range the converter calibrates, about
                # [-1, 1] once trained: |h| < 1 never clips.
                state = FixedRangeQuantizer(*FIXED_RANGES[("tanh", 8)], 8)
                pairs.append((keras.activations.linear, state))
        return pairs

    def set_quantize_weights(self, layer, quantize_weights):
        pass  # the wrapper substitutes the quantized kernels

    def set_quantize_activations(self, layer, quantize_activations):
        remaining = list(quantize_activations)
        inner = _inner_layers(layer)
        gates = sum(len(_gates(rnn)) for _, rnn in inner)
        # One more per layer for a fused LSTM's `h` (both directions of a
        # Bidirectional are alike).
        states = (len(remaining) - 2 * gates) // len(inner)
        for prefix, rnn in inner:
            for attribute, _ in _gates(rnn):
                before, after = remaining[:2]
                del remaining[:2]
                gate = _Gate(before, after)
                setattr(layer, f"{prefix}cell.{attribute}", gate)
            if states == 1:  # the fused LSTM's `h` (see above)
                call = _StateQuantizedCall(rnn.cell, remaining.pop(0))
                setattr(layer, f"{prefix}cell.call", call)
            # The learned ranges update at every step: a Python loop, not a
            # `while` loop (whose body cannot update the wrapper's ranges).
            setattr(layer, f"{prefix}unroll", True)
        if remaining:
            raise ValueError(
                "Expected the quantized activations of "
                "`get_activations_and_quantizers`. Received: "
                f"{len(remaining)} more"
            )

    def get_output_quantizers(self, layer):
        if not self.quantize_output or not self._output_range(layer):
            return []
        return [activation_quantizer(self.activation_bits)]

    def get_config(self):
        return {
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "quantize_output": self.quantize_output,
        }

    def _output_range(self, layer):
        """Whether the output gets a learned range: not a `SimpleRNN`
        whose output is a fixed-range activation's, nor an LSTM the int8
        export fuses (the converter calibrates the fused op's output, and
        a moving-average range would clip where that one does not)."""
        for _, rnn in _inner_layers(layer):
            cell = rnn.cell
            if isinstance(cell, keras.layers.SimpleRNNCell) and (
                _activation_name(cell.activation) in ("tanh", "sigmoid")
            ):
                return False
            if self.activation_bits == 8 and fusable_lstm(rnn):
                return False
        return True


class _Gate:
    """A gate activation with its input and its output fake-quantized."""

    def __init__(self, before, after):
        self.before = before
        self.after = after
        self.__name__ = after.__name__

    def __call__(self, inputs):
        return self.after(self.before(inputs))


class _StateQuantizedCall:
    """An LSTM cell's `call` whose new state `h` (also its output) is
    fake-quantized, as the fused int8 kernel stores it between steps."""

    def __init__(self, cell, quantize):
        self.cell = cell
        self.quantize = quantize

    def __call__(self, inputs, states, training=False):
        call = type(self.cell).call
        h, (_, c) = call(self.cell, inputs, states, training=training)
        h = self.quantize(h)
        return h, [h, c]


def _inner_layers(layer):
    """`[(attribute path prefix, recurrent layer)]` of `layer` or of the
    stand-in a wrapper passes to `set_quantize_activations`."""
    if getattr(layer, "forward_layer", None) is not None:
        return [
            ("forward_layer.", layer.forward_layer),
            ("backward_layer.", layer.backward_layer),
        ]
    return [("", layer)]


def _gates(rnn):
    """`[(attribute, activation)]` of the gate activations of `rnn`'s cell
    with a fixed TFLite range."""
    gates = []
    for attribute in _GATE_ATTRIBUTES:
        function = getattr(rnn.cell, attribute, None)
        if _activation_name(function) in ("sigmoid", "tanh"):
            gates.append((attribute, function))
    return gates
