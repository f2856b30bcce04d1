"""The error raised when the TFLite converter rejects a model."""

_LOG_LINES = 20


class ConversionError(RuntimeError):
    """The TFLite converter rejected the model.

    The message names the export mode, the model, and the converter's own
    diagnostic (which carries the rejected op and the Keras layer it came
    from); `saved_model_path` is set when the trained model was saved as
    `.keras` so that no training is lost; `converter_log` holds what the
    converter printed (its last lines are shown after the message).
    """

    def __init__(self, message, saved_model_path=None, converter_log=None):
        super().__init__(message)
        self.message = message
        self.saved_model_path = saved_model_path
        self.converter_log = converter_log or None

    def __str__(self):
        if not self.converter_log:
            return self.message
        lines = self.converter_log.strip().splitlines()[-_LOG_LINES:]
        return f"{self.message}\nConverter output:\n" + "\n".join(lines)
