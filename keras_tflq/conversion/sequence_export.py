"""Export-time rewrites for Keras 3 recurrent and attention layers.

Keras 3's `LSTM`, `GRU` and `SimpleRNN` trace to a `while` loop over
TensorList ops, which the TFLite converter turns into a `WHILE` op with
Flex ops (dynamic batch) or, in the integer modes, crashes on. At export
time only, and only inside the graph the converter sees, each recurrent
layer is rewritten:

- an `LSTM` with TFLite's activations (`tanh`, `sigmoid`) becomes a call
  of a `tf.function` carrying the attributes that tf_keras' own LSTM
  carries (`api_implements="lstm_<id>"`, `time_major`, `go_backwards`) and
  its argument order (inputs, initial h, initial c, kernel, recurrent
  kernel, bias). The converter's "prepare composite functions" pass
  replaces such a function with one fused `UNIDIRECTIONAL_SEQUENCE_LSTM`
  op; the pass needs static state shapes, so the export fixes the batch
  at 1.
- a `GRU` is unrolled by hand, one cell per time step, with its weights
  split per gate in the graph's constants: Keras' own unrolled GRU splits
  a constant at the first step (the zero state times the recurrent
  kernel folds to the recurrent bias), a `SPLIT` the int8 quantizer
  leaves in float.
- any other recurrent layer (`SimpleRNN`, an `LSTM` with other
  activations, a masked call, an explicit initial state) is traced with
  Keras' `unroll=True`: one copy of the cell per time step.

A `Bidirectional` wrapper runs its two inner layers through the same
rewrite (two unidirectional ops: the converter has no route from a
TensorFlow graph to `BIDIRECTIONAL_SEQUENCE_LSTM`). `TimeDistributed`
with a static time axis is already a Python loop in Keras 3.

In `"int16x8"` every LSTM is unrolled (the converter has no 16x8 fused
LSTM). In a QAT model the `QuantizeWrapper` around a fused LSTM (or
around a `Bidirectional` or `TimeDistributed` holding one) is skipped:
fake quant in or around the fused op makes the converter fail or crash,
and the float kernels give the same int8 values: the converter quantizes
each gate's kernel on its own (max-abs, symmetric), as the QAT model's
`GateQuantizer` fake-quantizes it. The converter
quantizes the fused op's internals (cell state, gates, the output range
it shares with the recurrent input) from calibration statistics only, and
an unrolled cell's sums and products have no fake quant either: a QAT
model with recurrent layers is calibrated in `"int8"`
(`sequence_checks.calibration_need`) and refused in `"int16x8"`, where the
converter cannot calibrate a QAT model
(`sequence_checks.check_sequence_export`).

Models with `MultiHeadAttention` or `LayerNormalization` take the same
batch-1 route (no dynamic-shape ops), with `LayerNormalization` traced
without the float-only `NEG` op.
"""

import contextlib
import functools
import tempfile
import uuid

import keras

from keras_tflq.conversion.layer_calls import replaced_calls
from keras_tflq.conversion.model_inputs import ModelInputs
from keras_tflq.conversion.sequence_checks import attention_layers
from keras_tflq.conversion.sequence_checks import check_sequence_lengths
from keras_tflq.conversion.sequence_checks import keras_layers
from keras_tflq.conversion.sequence_checks import recurrent_layers
from keras_tflq.quantization.default_scheme.sequence_configs import fusable_lstm

FUSED_LSTM = "fused UNIDIRECTIONAL_SEQUENCE_LSTM"
UNROLLED = "unrolled"
_FUSED_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"


def sequence_converter(model, stack, fuse_lstm=True):
    """A TFLite converter for a model with recurrent layers.

    The model is exported as a SavedModel with a batch-1 signature while
    its recurrent layers are rewritten (see the module docstring), and
    the converter reads that SavedModel.

    Args:
        model: A built Keras model with recurrent layers.
        stack: A `contextlib.ExitStack` that removes the SavedModel folder.
        fuse_lstm: Trace fusable `LSTM` layers as the fused op; `False`
            unrolls them too (the converter has no 16x8 kernel for the
            fused op). Defaults to `True`.

    Returns:
        `(converter, paths)`: a `tf.lite.TFLiteConverter` and a dict
        `{layer name: FUSED_LSTM or UNROLLED}` of what each recurrent
        layer was traced as (to be confirmed with `confirm_paths`).

    Example:

    >>> with contextlib.ExitStack() as stack:
    ...     converter, paths = sequence_converter(model, stack)
    ...     content = converter.convert()
    """
    import tensorflow as tf

    check_sequence_lengths(model)
    folder = stack.enter_context(
        tempfile.TemporaryDirectory(prefix="keras_tflq_seq_")
    )
    structure = ModelInputs(model).structure
    signature = keras.tree.map_structure(
        lambda t: tf.TensorSpec((1, *t.shape[1:]), t.dtype, name=t.name),
        structure,
    )
    single = len(keras.tree.flatten(structure)) == 1
    if not isinstance(structure, dict) and single:
        signature = keras.tree.flatten(signature)
    else:
        signature = [signature]
    paths = {}
    with rewrite_recurrent_layers(
        model, paths, fuse_lstm=fuse_lstm
    ), _rewrite_layer_normalizations(model):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            functools.partial(model.__call__, training=False),
            signature,
        )
        archive.write_out(folder, verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(folder), paths


def confirm_paths(paths, inspection):
    """The paths the converter really took, given the artifact's ops.

    A function the converter did not fuse keeps its (unrolled) body, so the
    artifact is still valid; such layers are reported as unrolled.

    Args:
        paths: The dict from `sequence_converter`.
        inspection: What `inspect_tflite` says of the artifact.

    Returns:
        The dict `{layer name: path}` for the report.
    """
    fused = [name for name, path in paths.items() if path == FUSED_LSTM]
    if inspection["op_counts"].get(_FUSED_OP, 0) >= len(fused):
        return dict(paths)
    not_fused = f"{UNROLLED} (not fused by the converter)"
    return {
        name: not_fused if name in fused else path
        for name, path in paths.items()
    }


@contextlib.contextmanager
def rewrite_recurrent_layers(model, paths, fuse_lstm=True):
    """Rewrites the recurrent layers' calls while the context is open.

    Args:
        model: A Keras model.
        paths: A dict filled with `{layer name: path}` as layers are traced.
        fuse_lstm: Trace fusable `LSTM` layers as the fused op.
            Defaults to `True`.
    """
    saved = []
    wrappers = _quantize_wrappers(model)
    try:
        for name, layer in recurrent_layers(model):
            saved.append((layer, layer.__dict__.get("call"), layer.unroll))
            call = None
            if fuse_lstm:
                call = _fused_lstm_call(name, layer, paths)
            wrapper = wrappers.get(id(layer))
            if call is not None and wrapper is not None:
                # Fake quant in or around the fused op makes the converter
                # fail or crash; the float kernels it gets instead quantize
                # to the same int8 values (max-abs per gate, symmetric, as
                # the QAT model's GateQuantizer).
                bypassed = wrapper.__dict__.get("call")
                if not getattr(bypassed, "_tflq_bypass", False):
                    saved.append((wrapper, bypassed, None))
                    object.__setattr__(wrapper, "call", _bypass_call(wrapper))
            if call is None and type(layer) is keras.layers.GRU:
                call = _unrolled_gru_call(name, layer, paths)
            if call is None:
                call = _unrolled_call(name, layer, paths)
            object.__setattr__(layer, "call", call)
            object.__setattr__(layer, "unroll", True)
        yield paths
    finally:
        for layer, call, unroll in saved:
            if call is None:
                layer.__dict__.pop("call", None)
            else:
                object.__setattr__(layer, "call", call)
            if unroll is not None:
                object.__setattr__(layer, "unroll", unroll)


def _quantize_wrappers(model):
    """`{id(recurrent layer): the QuantizeWrapper around it}` for QAT
    models (a wrapper around a `Bidirectional` or `TimeDistributed`
    holds the recurrent layers inside it)."""
    from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper

    found = {}
    for layer in keras_layers(model):
        if isinstance(layer, QuantizeWrapper):
            for _, rnn in recurrent_layers(layer.layer):
                found[id(rnn)] = layer
    return found


def _bypass_call(wrapper):
    def call(inputs, training=None, **kwargs):
        return wrapper.layer(inputs, training=False, **kwargs)

    call._tflq_bypass = True
    return call


def _unrolled_call(name, layer, paths):
    original = type(layer).call.__get__(layer)

    def call(*args, **kwargs):
        paths[name] = UNROLLED
        return original(*args, **kwargs)

    return call


def _fused_lstm_call(name, layer, paths):
    """A call that traces `layer` as a function the converter fuses."""
    if not fusable_lstm(layer):
        return None
    import tensorflow as tf

    fused = _lstm_composite(layer.go_backwards)

    def call(sequences):
        cell = layer.cell
        dtype = sequences.dtype
        state = tf.zeros((sequences.shape[0], cell.units), dtype)
        kernel, recurrent_kernel = _kernels(cell, dtype)
        if cell.use_bias:
            bias = _tensor(cell.bias, dtype)
        else:
            bias = tf.zeros((4 * cell.units,), dtype)
        last, outputs, _, _, _ = fused(
            sequences, state, state, kernel, recurrent_kernel, bias
        )
        paths[name] = FUSED_LSTM
        return outputs if layer.return_sequences else last

    return _or_original(name, layer, paths, call)


def _or_original(name, layer, paths, rewritten):
    """`rewritten(sequences)` as `layer`'s call; Keras' own (unrolled) call
    for what it does not handle: a mask, an initial state, an unknown
    batch."""
    original = type(layer).call.__get__(layer)

    def call(sequences, initial_state=None, mask=None, training=False):
        if mask is None and initial_state is None and sequences.shape[0]:
            return rewritten(sequences)
        paths[name] = UNROLLED
        return original(
            sequences, initial_state=initial_state, mask=mask, training=training
        )

    return call


def _kernels(cell, dtype):
    return _tensor(cell.kernel, dtype), _tensor(cell.recurrent_kernel, dtype)


def _lstm_composite(go_backwards):
    """A `tf.function` with the signature and attributes of tf_keras' LSTM.

    The body (one cell per time step, no loop op) is what runs if the
    converter does not fuse the function; when it does, only the signature
    and the attributes matter.
    """
    import tensorflow as tf

    def lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        steps = range(inputs.shape[1])
        if go_backwards:
            steps = reversed(steps)
        h, c = init_h, init_c
        outputs = []
        for step in steps:
            z = tf.matmul(inputs[:, step], kernel)
            z = z + tf.matmul(h, recurrent_kernel) + bias
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            outputs.append(h)
        # The converter's rewrite returns a fifth output; its value is unused.
        return h, tf.stack(outputs, axis=1), h, c, tf.constant(0.0)

    attributes = {
        "api_implements": f"lstm_{uuid.uuid4()}",
        "api_preferred_device": "CPU",
        "time_major": False,
        "go_backwards": bool(go_backwards),
    }
    return tf.function(
        lstm, autograph=False, experimental_attributes=attributes
    )


def _tensor(variable, dtype):
    import tensorflow as tf

    return tf.cast(tf.convert_to_tensor(variable), dtype)


def _unrolled_gru_call(name, layer, paths):
    """A call that traces a `GRU` one cell per step, without `SPLIT` ops."""
    import tensorflow as tf

    if layer.stateful or layer.return_state:
        return None
    cell = layer.cell

    def call(sequences):
        dtype = sequences.dtype
        units = cell.units
        kernel, recurrent_kernel = _kernels(cell, dtype)
        gates = [slice(g * units, (g + 1) * units) for g in range(3)]
        if cell.use_bias and cell.reset_after:
            input_bias = _tensor(cell.bias, dtype)[0]
            recurrent_bias = _tensor(cell.bias, dtype)[1]
        elif cell.use_bias:
            input_bias = _tensor(cell.bias, dtype)
            recurrent_bias = tf.zeros((3 * units,), dtype)
        else:
            input_bias = tf.zeros((3 * units,), dtype)
            recurrent_bias = tf.zeros((3 * units,), dtype)
        steps = range(sequences.shape[1])
        if layer.go_backwards:
            steps = reversed(steps)
        h = None
        outputs = []
        for step in steps:
            x = sequences[:, step]
            x_z, x_r, x_h = (
                tf.matmul(x, kernel[:, g]) + input_bias[g] for g in gates
            )
            if h is None:  # The zero state: only the recurrent bias is left.
                r_z, r_r, r_h = (recurrent_bias[g] for g in gates)
            else:
                r_z, r_r = (
                    tf.matmul(h, recurrent_kernel[:, g]) + recurrent_bias[g]
                    for g in gates[:2]
                )
            z = cell.recurrent_activation(x_z + r_z)
            r = cell.recurrent_activation(x_r + r_r)
            if h is None:
                recurrent_h = r * r_h if cell.reset_after else 0.0
            elif cell.reset_after:
                r_h = tf.matmul(h, recurrent_kernel[:, gates[2]])
                recurrent_h = r * (r_h + recurrent_bias[gates[2]])
            else:
                recurrent_h = tf.matmul(r * h, recurrent_kernel[:, gates[2]])
            candidate = cell.activation(x_h + recurrent_h)
            h = (1.0 - z) * candidate if h is None else (
                z * h + (1.0 - z) * candidate
            )
            outputs.append(h)
        paths[name] = UNROLLED
        if layer.return_sequences:
            return tf.stack(outputs, axis=1)
        return h

    return _or_original(name, layer, paths, call)


def _rewrite_layer_normalizations(model):
    """Traces `LayerNormalization` as (x - mean) * rsqrt(var + eps).

    Keras' own formula on TensorFlow negates the mean (a `NEG` op, float
    only in TFLite); this one uses only ops with int8 kernels.
    """
    return replaced_calls(
        (layer, _layer_normalization_call(layer))
        for layer in attention_layers(model)
        if isinstance(layer, keras.layers.LayerNormalization)
        and not layer.rms_scaling
    )


def _layer_normalization_call(layer):
    import tensorflow as tf

    def call(inputs):
        axis = layer.axis
        mean = tf.reduce_mean(inputs, axis=axis, keepdims=True)
        centered = inputs - mean
        variance = tf.reduce_mean(centered * centered, axis=axis, keepdims=True)
        outputs = centered * tf.math.rsqrt(variance + layer.epsilon)
        shape = [1] * len(inputs.shape)
        for dim in [axis] if isinstance(axis, int) else axis:
            shape[dim] = inputs.shape[dim]
        if layer.gamma is not None:
            gamma = _tensor(layer.gamma, inputs.dtype)
            outputs = outputs * tf.reshape(gamma, shape)
        if layer.beta is not None:
            beta = _tensor(layer.beta, inputs.dtype)
            outputs = outputs + tf.reshape(beta, shape)
        return tf.cast(outputs, layer.compute_dtype)

    return call
