"""Capturing what native code prints to the process's stdout and stderr.

The TFLite converter writes from C++ straight to file descriptors 1 and 2
("fully_quantize: ..." on every integer export, MLIR diagnostics), past
Python's `sys.stdout`, into the middle of the user's progress bars. While
it runs, both descriptors point at a temporary file instead; the text is
kept for the report (or the error) rather than printed.
"""

import contextlib
import ctypes
import os
import sys
import tempfile


def _flush_all():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers (POSIX)
    except (AttributeError, OSError, TypeError):
        pass


class CapturedOutput:
    """The text captured by `capture_native_output` (after it exits)."""

    def __init__(self):
        self.text = ""


@contextlib.contextmanager
def capture_native_output():
    """Redirects file descriptors 1 and 2 into a temporary file.

    Yields a `CapturedOutput` whose `text` holds everything written to
    either descriptor (by Python or native code) once the block exits.

    Example:

    >>> with capture_native_output() as captured:
    ...     content = converter.convert()
    >>> log = captured.text
    """
    captured = CapturedOutput()
    _flush_all()
    with tempfile.TemporaryFile(prefix="keras_tflq_log_") as sink:
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            yield captured
        finally:
            _flush_all()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")
