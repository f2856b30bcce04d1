"""TFLM's Python runtime and flatbuffer schema, imported lazily.

The `tflite-micro` package (the `micro` extra) is imported only when an
artifact is checked for a microcontroller, so the rest of keras_tflq runs
without it.
"""

import contextlib
import os
import tempfile

MICRO_INSTALL_HINT = 'pip install "keras-tflq[micro]"'


class MicroError(ValueError):
    """The artifact cannot run on TensorFlow Lite Micro as it is.

    The message names the op (and the Keras layer it came from, when the
    artifact's tensor names carry it) and TFLM's own diagnostic.
    """


def tflite_micro_runtime():
    """Imports and returns `tflite_micro`'s Python runtime module.

    Raises:
        ImportError: `tflite-micro` is not installed; the message names the
            `micro` extra that installs it.
    """
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as error:
        raise ImportError(
            "The micro target needs TensorFlow Lite Micro's Python "
            f"interpreter: {MICRO_INSTALL_HINT} (or pip install "
            f"tflite-micro). ({error})"
        ) from None
    return runtime


def parse_model(content):
    """The artifact's flatbuffer as TFLM's schema objects."""
    runtime = tflite_micro_runtime()
    return runtime.convert_bytearray_to_object(bytearray(content))


def builtin_names():
    """`{builtin op code: op name}` from TFLM's schema."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    operators = schema_py_generated.BuiltinOperator
    return {
        value: name
        for name, value in vars(operators).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def text_of(value):
    """A flatbuffer string (bytes) as text."""
    return (
        value.decode("utf-8", "replace")
        if isinstance(value, bytes)
        else str(value)
    )


@contextlib.contextmanager
def captured_stderr():
    """Sends the process' stderr (where TFLM prints) to a file while inside.

    Yields a function returning what was written so far.
    """
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)

        def read():
            os.fsync(capture.fileno())
            capture.seek(0)
            return capture.read().decode("utf-8", "replace")

        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def first_lines(text, count=4):
    """The first non-empty lines of a diagnostic, joined with ' | '."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:count]) or "no diagnostic"


def tflite_micro_version():
    """The installed `tflite-micro` version."""
    import tflite_micro

    return getattr(tflite_micro, "__version__", "unknown")
