"""What a `tf_keras` `fit()` asks of a callback beyond Keras 3's protocol."""

import keras

_BATCH_HOOKS = {
    "train": ("on_train_batch_begin", "on_train_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}


class TfKerasCallbackProtocol:
    """Lets a Keras 3 callback run in a `tf_keras` model's `fit()`.

    `tf_keras`' `CallbackList` asks each callback which batch hooks it
    implements (to skip the others) before training; Keras 3's `Callback`
    has no such methods. Mixed in before `keras.callbacks.Callback`, this
    answers as `tf_keras.callbacks.Callback` does (a hook is implemented
    when the class overrides it) without importing `tf_keras`. The rest of
    the protocol (`set_model`, `set_params`, the `on_*` hooks, `model`,
    `params`) is the same in both.

    Example:

    ```python
    class Peek(TfKerasCallbackProtocol, keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(epoch, logs)

    tf_keras_model.fit(x, y, callbacks=[Peek()])
    ```
    """

    def _implements_train_batch_hooks(self):
        return self._overrides("train")

    def _implements_test_batch_hooks(self):
        return self._overrides("test")

    def _implements_predict_batch_hooks(self):
        return self._overrides("predict")

    def _overrides(self, kind):
        base = keras.callbacks.Callback
        return any(
            getattr(type(self), hook) is not getattr(base, hook)
            for hook in _BATCH_HOOKS[kind]
        )
