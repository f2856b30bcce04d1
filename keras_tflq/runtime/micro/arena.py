"""The smallest tensor arena TFLM allocates a model in, found by bisection."""

import json
import os
import subprocess
import sys
import tempfile

from keras_tflq.runtime.micro.tflm import MicroError
from keras_tflq.runtime.micro.tflm import tflite_micro_runtime

_FIRST_ARENA = 4096
_MAX_ARENA = 1 << 30


def smallest_arena(content, upper=None):
    """The smallest tensor arena, in bytes, in which TFLM allocates the model.

    Found without guessing: the arena is doubled from 4 KiB until TFLM
    allocates the model in it, then the size is bisected down to the byte
    (allocation succeeds for every size above the smallest). Each trial
    runs in a helper process: TFLM can crash, not just fail, when an arena
    is far too small.

    Args:
        content: The bytes of a TFLite flatbuffer that TFLM can run (see
            `check_micro_ops`).
        upper: An arena size known to allocate, to start the bisection
            from. Defaults to `None` (found by doubling).

    Returns:
        The smallest arena size, an int.

    Raises:
        MicroError: Not even a 1 GiB arena allocates the model.
    """
    with ArenaProbe(content) as probe:
        return bisect_arena(probe, upper)


def bisect_arena(probe, upper=None):
    low = 0
    high = upper or _FIRST_ARENA
    while not probe(high)[0]:
        if high >= _MAX_ARENA:
            raise MicroError(
                "Expected the model to allocate in a tensor arena of at "
                f"most {_MAX_ARENA} bytes. Received: TFLM could not "
                "allocate it"
            )
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if probe(middle)[0]:
            high = middle
        else:
            low = middle
    return high


def allocates(content, arena_size):
    """Whether TFLM allocates the model in an arena of `arena_size` bytes.

    Tried in a helper process, so an arena small enough to crash TFLM
    answers `False` instead of ending this process.

    Example:

    ```python
    import keras, tensorflow as tf
    from keras_tflq.runtime.micro import allocates, smallest_arena

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    arena = smallest_arena(content)
    assert allocates(content, arena) and not allocates(content, arena - 1)
    ```
    """
    with ArenaProbe(content) as probe:
        return probe(arena_size)[0]


def generous_arena(content):
    """An arena large enough for any op check of `content`."""
    return max(64 << 20, 16 * len(content))


# Runs in the helper process: loads the model once, then answers one line
# of JSON per arena size read from stdin.
_PROBE_WORKER = """
import json, os, sys, tempfile
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
for line in sys.stdin:
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            runtime.Interpreter.from_bytes(data, arena_size=int(line))
            ok, error = True, ""
        except RuntimeError as e:
            ok, error = False, str(e)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", "replace")
    print(json.dumps([ok, (text + chr(10) + error).strip()]), flush=True)
"""


class ArenaProbe:
    """Tries arena sizes in a helper process, restarted if TFLM crashes it.

    Called with a size, returns `(allocates, TFLM's diagnostic)`; a crash
    counts as not allocating.
    """

    def __init__(self, content):
        tflite_micro_runtime()
        fd, self._path = tempfile.mkstemp(suffix=".tflite")
        with os.fdopen(fd, "wb") as handle:
            handle.write(bytes(content))
        self._process = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._stop()
        os.remove(self._path)

    def __call__(self, arena_size):
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _PROBE_WORKER, self._path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        try:
            self._process.stdin.write(f"{int(arena_size)}\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self._process.wait()
            self._process = None
            return False, f"TFLM crashed (exit status {code})"
        ok, diagnostic = json.loads(line)
        return ok, diagnostic

    def _stop(self):
        if self._process is not None:
            self._process.stdin.close()
            self._process.wait()
            self._process = None
