"""Finding the validation data of the `fit()` call a callback runs in."""

import inspect


def find_fit_validation_data(model):
    """Returns the validation data of the running `model.fit()`, or `None`.

    Keras 3's `fit()` keeps its validation data (after `validation_split`
    has been applied) only as local variables, so a callback cannot reach
    it through any attribute when training begins. This looks up the
    running `fit()` frame of `model` on the call stack and reads those
    locals. It returns `None` when `fit()` was given no validation data.

    Args:
        model: The model whose `fit()` is running.

    Returns:
        `None`, or a dict with `x`, `y`, `sample_weight` and `batch_size`.

    Raises:
        RuntimeError: Not called from within `model.fit()`.

    Example:

    ```python
    import keras, numpy as np
    from keras_tflq.callbacks.fit_validation_data import (
        find_fit_validation_data,
    )

    class Peek(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.validation = find_fit_validation_data(self.model)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    peek = Peek()
    model.fit(np.ones((8, 4)), np.ones((8, 1)), validation_split=0.25,
              callbacks=[peek], verbose=0)
    x_val = peek.validation["x"]  # the last 2 of the 8 samples
    ```
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            local_vars = frame.f_locals
            if (
                frame.f_code.co_name == "fit"
                and local_vars.get("self") is model
            ):
                if "validation_data" not in local_vars:
                    break
                if local_vars["validation_data"] is None:
                    return None
                return {
                    "x": local_vars.get("val_x"),
                    "y": local_vars.get("val_y"),
                    "sample_weight": local_vars.get("val_sample_weight"),
                    "batch_size": local_vars.get("validation_batch_size")
                    or local_vars.get("batch_size")
                    or 32,
                }
            frame = frame.f_back
    finally:
        del frame
    raise RuntimeError(
        "Expected to run inside model.fit() of the TensorFlow backend's "
        "trainer. "
        f"Received: no fit() frame of model {model.name!r} on the call stack; "
        "pass calibration_data= explicitly"
    )
