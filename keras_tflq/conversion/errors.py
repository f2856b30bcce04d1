"""The error raised when the TFLite converter rejects a model."""


class ConversionError(RuntimeError):
    """The TFLite converter rejected the model.

    The message names the export mode, the model, and the converter's own
    diagnostic (which carries the rejected op and the Keras layer it came
    from); `saved_model_path` is set when the trained model was saved as
    `.keras` so that no training is lost.
    """

    def __init__(self, message, saved_model_path=None):
        super().__init__(message)
        self.saved_model_path = saved_model_path
