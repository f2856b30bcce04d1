"""Quantizers in an XLA-compiled step (`compile(jit_compile=True)`).

The built-in quantizers compile with XLA. A custom `Quantizer` may use an
op XLA has no kernel for (a `tf.py_function`, a string op): XLA would then
fail on the whole train step with a message naming a graph node. So when a
train step is traced for XLA, each custom quantizer is first compiled on
its own, and one that does not compile stops the trace with an error that
names the quantizer, its layer and XLA's reason, before any batch runs.
"""

import keras

_BUILT_IN_PACKAGE = "keras_tflq.quantization."


def _in_xla_trace():
    """Whether the caller is being traced into an XLA-compiled function."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    from tensorflow.python.ops import control_flow_util

    graph = tf.compat.v1.get_default_graph()
    return bool(control_flow_util.GraphOrParentsInXlaContext(graph))


def _xla_reason(quantizer, inputs, weights):
    """XLA's message if `quantizer` in training does not compile on a
    tensor like `inputs`, else `None`."""
    import tensorflow as tf

    spec = tf.TensorSpec(inputs.shape, inputs.dtype)

    def step(values):
        return quantizer(values, True, weights)

    with tf.init_scope():
        compiled = tf.function(step, jit_compile=True)
        try:
            compiled.experimental_get_compiler_ir(spec)(stage="hlo")
        except Exception as error:  # noqa: BLE001 - XLA raises several types
            return str(error).strip().splitlines()[0]
    return None


def check_quantizer(layer, quantizer, inputs, weights):
    """Raises a `ValueError` when a custom quantizer of `layer` cannot run in
    the XLA step being traced; checks each quantizer once per layer."""
    if type(quantizer).__module__.startswith(_BUILT_IN_PACKAGE):
        return
    if not _in_xla_trace():
        return
    checked = layer.__dict__.setdefault("_tflq_xla_checked", set())
    if id(quantizer) in checked:
        return
    reason = _xla_reason(quantizer, inputs, weights)
    if reason is not None:
        raise ValueError(
            f"Expected every quantizer to compile with XLA, as the model "
            f"was compiled with `jit_compile=True`. Received: quantizer="
            f"{type(quantizer).__name__} of layer {layer.name!r}, which XLA "
            f"rejects: {reason} Compile the model with "
            "`jit_compile=False`, or write the quantizer with ops XLA "
            "supports."
        )
    checked.add(id(quantizer))
