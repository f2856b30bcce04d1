"""QAT layers compute in float32 under any `keras.mixed_precision` policy.

TensorFlow's fake-quantization ops take float32 only, and the ranges and
BatchNormalization statistics QAT learns must keep float32 precision (a
bfloat16 range has 8 significant bits, as coarse as the int8 grid it
defines). So a quantizing layer and the layer it wraps run in float32;
the layers between them keep the model's policy.
"""

FLOAT32 = "float32"


def float32_kwargs(kwargs, *wrapped):
    """`kwargs` for a quantizing layer's constructor with a float32 dtype
    policy (unless given), after setting the `wrapped` layers' policies to
    float32 too.

    Example:

    >>> super().__init__(**float32_kwargs(kwargs, conv, batch_norm))
    """
    for layer in wrapped:
        if layer.dtype_policy.name != FLOAT32:
            layer.dtype_policy = FLOAT32
    kwargs.setdefault("dtype", FLOAT32)
    return kwargs
