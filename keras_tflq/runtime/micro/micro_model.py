"""`MicroModel`: an artifact run by TFLM's interpreter on the host."""

import numpy as np

from keras_tflq.runtime.micro.arena import smallest_arena
from keras_tflq.runtime.micro.tflm import MicroError
from keras_tflq.runtime.micro.tflm import captured_stderr
from keras_tflq.runtime.micro.tflm import first_lines
from keras_tflq.runtime.micro.tflm import parse_model
from keras_tflq.runtime.micro.tflm import tflite_micro_runtime


class MicroModel:
    """A TFLite artifact loaded in TFLM's interpreter, run one sample at a time.

    Inputs and outputs are raw arrays of the artifact's tensor types (an
    int8 model takes and returns int8 arrays): this class compares
    runtimes, it does not quantize.

    Args:
        content: The bytes of a TFLite flatbuffer.
        arena_size: The tensor arena in bytes, one that allocates (TFLM
            may crash in an arena far too small: check with `allocates`).
            Defaults to `None` (`smallest_arena(content)`).

    Example:

    ```python
    import keras, numpy as np, tensorflow as tf
    from keras_tflq.runtime.micro import MicroModel

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (y,) = MicroModel(content).run([np.ones((1, 4), np.float32)])
    assert y.shape == (1, 3)
    ```
    """

    def __init__(self, content, arena_size=None):
        self.arena_size = arena_size or smallest_arena(content)
        self._content = bytes(content)
        interpreter, diagnostic = _try_load(self._content, self.arena_size)
        if interpreter is None:
            raise MicroError(
                f"Expected TFLM to allocate the model in {self.arena_size} "
                f"bytes. Received: {first_lines(diagnostic)}"
            )
        self._interpreter = interpreter
        model = parse_model(self._content)
        self.num_inputs = len(model.subgraphs[0].inputs)
        self.num_outputs = len(model.subgraphs[0].outputs)

    def input_details(self, index):
        """TFLM's `dtype`, `shape` and `quantization_parameters` of an input."""
        return self._interpreter.get_input_details(index)

    def run(self, inputs):
        """Runs one sample: `inputs` in the artifact's input order, batch 1.

        Returns:
            The list of output arrays, in the artifact's output order.
        """
        self._interpreter.reset()
        for index, array in enumerate(inputs):
            details = self._interpreter.get_input_details(index)
            self._interpreter.set_input(
                np.asarray(array, dtype=details["dtype"]).reshape(
                    details["shape"]
                ),
                index,
            )
        with captured_stderr() as read:
            try:
                self._interpreter.invoke()
            except RuntimeError as error:
                raise MicroError(
                    f"Expected TFLM to run the model. Received: {error}: "
                    f"{first_lines(read())}"
                ) from None
        return [
            np.array(self._interpreter.get_output(i))
            for i in range(self.num_outputs)
        ]


def _try_load(content, arena_size):
    """`(interpreter, "")`, or `(None, TFLM's diagnostic)` if it fails."""
    runtime = tflite_micro_runtime()
    with captured_stderr() as read:
        try:
            return runtime.Interpreter.from_bytes(
                bytes(content), arena_size=int(arena_size)
            ), ""
        except RuntimeError as error:
            return None, f"{read().strip()}\n{error}".strip()
