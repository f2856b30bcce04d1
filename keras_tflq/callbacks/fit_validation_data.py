"""Finding the validation data of the `fit()` call a callback runs in."""

import inspect

import keras

# The names Keras 3's TensorFlow trainer (3.9 to 3.15) and tf_keras' trainer
# give fit()'s validation data after validation_split has been applied.
_VALIDATION_LOCALS = ("val_x", "val_y", "val_sample_weight")


def find_fit_validation_data(model):
    """Returns the validation data of the running `model.fit()`, or `None`.

    Keras 3's `fit()` (and `tf_keras`' `fit()`) keeps its validation data
    (after `validation_split` has been applied) only as local variables,
    so a callback cannot reach it through any attribute when training
    begins. This looks up the running `fit()` frame of `model` on the call
    stack and reads those locals. It returns `None` when `fit()` was given
    no validation data.

    Args:
        model: The model whose `fit()` is running.

    Returns:
        `None`, or a dict with `x`, `y`, `sample_weight` and `batch_size`.

    Raises:
        RuntimeError: Not called from within `model.fit()`, or that
            `fit()` keeps its validation data under other names (a Keras
            newer than this package knows); the message says to pass
            `calibration_data=`.

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
            is_fit = frame.f_code.co_name == "fit"
            if is_fit and local_vars.get("self") is model:
                return _validation_from_locals(local_vars, model)
            frame = frame.f_back
    finally:
        del frame
    raise RuntimeError(
        "Expected to run inside model.fit() of the TensorFlow backend's "
        f"trainer. Received: no fit() frame of model {model.name!r} on the "
        "call stack; pass calibration_data= explicitly"
    )


def _validation_from_locals(local_vars, model):
    if local_vars.get("validation_data", ...) is None:
        return None
    missing = [
        name
        for name in ("validation_data",) + _VALIDATION_LOCALS
        if name not in local_vars
    ]
    if missing:
        raise RuntimeError(
            "Expected fit()'s validation data in the trainer's locals "
            f"{_VALIDATION_LOCALS}. Received: a fit() frame of model "
            f"{model.name!r} without {missing} (Keras {keras.__version__} "
            "may have renamed them); pass calibration_data= to TFLiteExport "
            "explicitly, with evaluate=False, or use a keras_tflq release "
            "that supports this Keras"
        )
    return {
        "x": local_vars["val_x"],
        "y": local_vars["val_y"],
        "sample_weight": local_vars["val_sample_weight"],
        "batch_size": local_vars.get("validation_batch_size")
        or local_vars.get("batch_size")
        or 32,
    }
