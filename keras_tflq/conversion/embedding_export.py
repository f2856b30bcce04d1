"""Export-time rewrite of `Embedding` lookups for TFLite's 16x8 mode.

Keras 3's `Embedding` looks its tokens up with `keras.ops.take`, which on
TensorFlow first maps negative indices into range:
`where(ids < 0, ids + input_dim, ids)`, three int32 ops (`LESS`, `ADD`,
`SELECT_V2`) on the token input. TensorFlow 2.21 quantizes a 16x8
artifact with its older quantizer (`tensorflow/lite/tools/optimize`;
the MLIR quantizer serves int8 only), whose op table marks comparisons
as not quantizable in 16x8 and then treats every such op as a
real-valued one needing a calibrated range for its inputs: the int32
token input has none (calibration records float tensors only), and the
conversion fails with "Max and min for dynamic tensors should be recorded
during calibration". The rewrite traces each lookup as a plain `GATHER`
of the token ids, which that quantizer handles: int32 ids in, the table
and the output in int16.

Only negative ids behave differently: Keras wraps them around the table,
the artifact's `GATHER` fails at `invoke()` ("gather index out of
bounds"). Token ids are indices in `[0, input_dim)`, as Keras documents
for `Embedding`.
"""

import keras

from keras_tflq.conversion.layer_calls import replaced_calls
from keras_tflq.conversion.sequence_checks import keras_layers


def needs_direct_lookups(model, mode):
    """Whether the export of `model` in `mode` traces its `Embedding`
    lookups with `direct_embedding_lookups`: in `"int16x8"`, for a model
    holding a float `Embedding` (not one Keras itself quantized)."""
    return mode == "int16x8" and bool(_embeddings(model))


def direct_embedding_lookups(model):
    """A context that traces every `Embedding` of `model` as a plain
    `GATHER` while it is open.

    The layers' calls are replaced on the instances (a QAT model's
    `QuantizeWrapper` still substitutes the fake-quantized table) and
    restored on exit, whatever happens inside.

    Args:
        model: A Keras model.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq.conversion.embedding_export import (
        direct_embedding_lookups,
    )

    inputs = keras.Input((4,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Embedding(5, 2)(inputs))
    with direct_embedding_lookups(model):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        content = converter.convert()
    ```
    """
    return replaced_calls(
        (layer, _direct_call(layer)) for layer in _embeddings(model)
    )


def _embeddings(model):
    return [
        layer
        for layer in keras_layers(model)
        if isinstance(layer, keras.layers.Embedding)
        and not layer.quantization_mode
    ]


def _direct_call(layer):
    import tensorflow as tf

    def call(inputs):
        ids = inputs
        if ids.dtype not in (tf.int32, tf.int64):
            ids = tf.cast(ids, tf.int32)
        outputs = tf.gather(layer.embeddings, ids)
        return tf.cast(outputs, layer.compute_dtype)

    return call
