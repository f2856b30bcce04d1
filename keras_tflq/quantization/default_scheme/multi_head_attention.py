"""`QuantizeMultiHeadAttention`: MultiHeadAttention as TFLite's int8 ops."""

import math

import keras
from keras import ops

from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme.softmax_output import (
    fixed_softmax_quant,
)
from keras_tflq.quantization.default_scheme.wrapping_layer import (
    WrappingSchemeLayer,
)
from keras_tflq.quantization.quantizer_base import build_quantizer

# The projections, by their sublayer property on MultiHeadAttention.
_PROJECTIONS = ("query", "key", "value")
# The activations TFLite's int8 graph quantizes inside the layer (the
# softmax output has TFLite's fixed range; the output is `SchemeLayer`'s).
_ACTIVATIONS = _PROJECTIONS + ("scores", "context")


def _refusal(layer, what):
    return ValueError(
        "Expected a MultiHeadAttention on 3-D inputs (batch, sequence, "
        "features), attending over the sequence, without masks, gating or "
        "a sliding window, to quantize it (the form TFLite runs as "
        f"FULLY_CONNECTED, BATCH_MATMUL and SOFTMAX ops). Received: "
        f"layer={layer.name!r} with {what}. To keep it float, annotate the "
        "other layers (`quantize_annotate_layer`) and call `quantize_apply`."
    )


def unsupported_form(layer):
    """What keeps the default scheme from running `layer` (a
    MultiHeadAttention), as text, or None.

    The registry treats such a layer as unsupported (refused, or kept
    float with `unsupported="float"`).

    Example:

    >>> unsupported_form(keras.layers.MultiHeadAttention(2, 4, use_gate=True))
    'use_gate=True'
    """
    config = layer.get_config()
    if config["attention_axes"] not in (None, (1,), [1], 1, (-2,), [-2]):
        return f"attention_axes={config['attention_axes']!r}"
    output_shape = config["output_shape"]
    if output_shape is not None and len(
        output_shape if isinstance(output_shape, (list, tuple)) else [1]
    ) != 1:
        return f"output_shape={output_shape!r}"
    if config.get("use_gate"):
        return "use_gate=True"
    if config.get("sliding_window") is not None:
        return f"sliding_window={config['sliding_window']!r}"
    return None


def _check_attention(layer, *shapes):
    """Refuses a MultiHeadAttention the int8 decomposition cannot run."""
    for shape in shapes:
        if shape is not None and len(shape) != 3:
            raise _refusal(layer, f"an input of shape {tuple(shape)}")
    form = unsupported_form(layer)
    if form is not None:
        raise _refusal(layer, form)


@keras.saving.register_keras_serializable(package="keras_tflq")
class QuantizeMultiHeadAttention(WrappingSchemeLayer):
    """Runs a `MultiHeadAttention` as the int8 ops TFLite runs it with.

    The converter turns the layer into three `FULLY_CONNECTED`
    projections, a `BATCH_MATMUL` of queries and keys, a `SOFTMAX`, a
    `BATCH_MATMUL` of the probabilities and values, and an output
    `FULLY_CONNECTED`, with reshapes and transposes (which keep their
    input's range) in between. This layer computes exactly those ops:

    - each projection kernel fake-quantized int8, symmetric, per tensor
      (TFLite's `FULLY_CONNECTED`), the query's scaled by
      `1 / sqrt(key_dim)` first (folded, so no multiply op is left);
    - a range on each projection's output, which are also both operands
      of the two matmuls, on the attention scores and on the context;
    - the softmax output on TFLite's fixed grid (int8: scale 1/256, zero
      point -128);
    - the output projection like the others, its output range last.

    Masks (`attention_mask`, `use_causal_mask`, Keras masks on the inputs)
    and `return_attention_scores` are refused when the layer is called.

    Args:
        layer: a `MultiHeadAttention` (3-D inputs, default attention axes).
        quantize_output: fake-quantize the output. Defaults to `True`.
        activation_bits: 8 or 16. Defaults to `8`.
        **kwargs: base layer arguments.

    Example:

    ```python
    import keras
    from keras_tflq.quantization.default_scheme.multi_head_attention import (
        QuantizeMultiHeadAttention,
    )

    attention = QuantizeMultiHeadAttention(
        keras.layers.MultiHeadAttention(num_heads=2, key_dim=4))
    x = keras.ops.ones((1, 5, 8))
    y = attention(x, x)
    ```
    """

    wrapped_class = keras.layers.MultiHeadAttention

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        _check_attention(layer)
        self._dropout = keras.layers.Dropout(layer.dropout)

    def build(self, query_shape, value_shape, key_shape=None):
        _check_attention(self.layer, query_shape, value_shape, key_shape)
        if not self.layer.built:
            self.layer.build(query_shape, value_shape, key_shape)
        schedule_state.add_schedule_variables(self)
        self._kernels = {}
        for name in _PROJECTIONS + ("output",):
            quantizer = default_quantize_config.weight_quantizer(None)
            kernel = self._dense(name).kernel
            weights = build_quantizer(
                quantizer, tuple(kernel.shape), f"{name}_kernel", self
            )
            self._kernels[name] = (quantizer, weights)
        self._activations = {}
        for name in _ACTIVATIONS:
            quantizer = default_quantize_config.activation_quantizer(
                self.activation_bits
            )
            weights = build_quantizer(quantizer, None, name, self)
            self._activations[name] = (quantizer, weights)
        self.build_output_quantizer(None)
        self.built = True

    def _dense(self, name):
        return getattr(self.layer, f"{name}_dense")

    def _activation(self, name, values, training):
        quantizer, weights = self._activations[name]
        return schedule_state.quantize(
            self, quantizer, values, training, weights
        )

    def _projection(self, name, inputs, training, scale=1.0):
        """`inputs @ kernel + bias` of one EinsumDense as a 2-D kernel,
        the kernel fake-quantized (after `scale`).

        An einsum, not `ops.matmul`: the converter then keeps the 3-D
        output of the `FULLY_CONNECTED` (after a matmul it drops the
        reshape back to 3-D and broadcasts the next `ADD`, which its
        int16 `ADD` rejects in 16x8 models).
        """
        dense = self._dense(name)
        kernel = ops.convert_to_tensor(dense.kernel)
        if name == "output":  # (heads, value_dim, features)
            matrix = ops.reshape(kernel, (-1, kernel.shape[-1]))
        else:  # (features, heads, key_dim)
            matrix = ops.reshape(kernel, (kernel.shape[0], -1))
        if scale != 1.0:
            matrix = matrix * scale
        quantizer, weights = self._kernels[name]
        matrix = schedule_state.quantize(
            self, quantizer, matrix, training, weights
        )
        outputs = ops.einsum("abc,cd->abd", inputs, matrix)
        bias = getattr(dense, "bias", None)
        if bias is not None:
            outputs = outputs + ops.reshape(bias, (-1,)) * scale
        return outputs

    def _heads(self, values, size):
        """(batch, length, heads * size) -> (batch, heads, length, size)."""
        values = ops.reshape(
            values, (-1, values.shape[1], self.layer.num_heads, size)
        )
        return ops.transpose(values, (0, 2, 1, 3))

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
    ):
        self._check_call(
            (query, value, key),
            query_mask=query_mask,
            value_mask=value_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
            return_attention_scores=return_attention_scores,
            use_causal_mask=use_causal_mask,
        )
        training = bool(training)
        key = value if key is None else key
        layer = self.layer
        scale = 1.0 / math.sqrt(float(layer.key_dim))
        q = self._activation(
            "query", self._projection("query", query, training, scale), training
        )
        k = self._activation(
            "key", self._projection("key", key, training), training
        )
        v = self._activation(
            "value", self._projection("value", value, training), training
        )
        q = self._heads(q, layer.key_dim)
        k = self._heads(k, layer.key_dim)
        v = self._heads(v, layer.value_dim)
        scores = self._activation(
            "scores", ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), training
        )
        probabilities = fixed_softmax_quant(
            self, ops.softmax(scores, axis=-1), training, self.activation_bits
        )
        probabilities = self._dropout(probabilities, training=training)
        context = self._activation(
            "context", ops.matmul(probabilities, v), training
        )
        context = ops.transpose(context, (0, 2, 1, 3))
        context = ops.reshape(
            context,
            (-1, context.shape[1], layer.num_heads * layer.value_dim),
        )
        outputs = self._projection("output", context, training)
        return self.quantized_output(outputs, training)

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return self.layer.compute_output_shape(
            query_shape, value_shape, key_shape
        )

    def _check_call(self, tensors, **kwargs):
        """Refuses masks and attention scores (checked when the layer is
        called on symbolic tensors, so before any training step)."""
        masks = ("query_mask", "value_mask", "key_mask", "attention_mask")
        given = [name for name in masks if kwargs.get(name) is not None]
        names = ("query", "value", "key")
        for tensor, name in zip(tensors, names, strict=True):
            if getattr(tensor, "_keras_mask", None) is not None:
                given.append(f"a Keras mask on `{name}`")
        for flag in ("use_causal_mask", "return_attention_scores"):
            if kwargs.get(flag):
                given.append(f"{flag}=True")
        if given:
            raise _refusal(self.layer, ", ".join(given))

    def compute_output_spec(self, query, value, key=None, **kwargs):
        self._check_call((query, value, key), **kwargs)
        return keras.KerasTensor(
            self.compute_output_shape(
                query.shape, value.shape, None if key is None else key.shape
            ),
            dtype=self.compute_dtype,
        )
