"""Replacing layers' calls for the trace the converter sees, and only then."""

import contextlib


@contextlib.contextmanager
def replaced_calls(replacements):
    """Gives each layer its replacement `call` while the context is open.

    The replacement is set on the instance (Keras' `Layer.__call__` runs
    it), and the instance's own `call` attribute, if it had one, is back
    on exit, whatever happens inside or while the replacements are made.

    Args:
        replacements: An iterable of `(layer, call)`.

    Example:

    ```python
    import keras
    from keras_tflq.conversion.layer_calls import replaced_calls

    layer = keras.layers.Dense(2)
    with replaced_calls([(layer, lambda inputs: inputs)]):
        print(layer(keras.ops.ones((1, 3))).shape)  # (1, 3)
    assert "call" not in layer.__dict__
    ```
    """
    saved = []
    try:
        for layer, call in replacements:
            saved.append((layer, layer.__dict__.get("call")))
            object.__setattr__(layer, "call", call)
        yield
    finally:
        for layer, call in reversed(saved):
            if call is None:
                layer.__dict__.pop("call", None)
            else:
                object.__setattr__(layer, "call", call)
