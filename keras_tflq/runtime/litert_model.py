"""Batched inference on a TFLite artifact with the LiteRT interpreter."""

import os
import warnings

import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.interpreter import OpResolverType

from keras_tflq.argument_checks import check_positive_int
from keras_tflq.runtime.tensor_io import dequantize_output
from keras_tflq.runtime.tensor_io import dequantized_dtype
from keras_tflq.runtime.tensor_io import named_io
from keras_tflq.runtime.tensor_io import quantize_input


class LiteRTModel:
    """Runs a `.tflite` artifact batch by batch, like a Keras model.

    Inputs and outputs are matched to the Keras model the artifact was
    converted from: inputs by the names of the Keras `Input` layers (the
    names of the `"serving_default"` signature) and in the Keras input order;
    outputs in the Keras output order (signature names `output_0`,
    `output_1`, ..., sorted numerically, so `output_10` comes after
    `output_9`).

    Each batch is run with one `invoke()`: the input tensors are resized to
    the batch size (and the tensors re-allocated only when the shape
    changes). If an artifact was converted with a fixed batch dimension and
    the interpreter cannot be resized (for example a `RESHAPE` with a
    constant target shape), the batch is run one sample per `invoke()`
    instead; `per_sample` is then `True`.

    Float inputs are quantized for int8, uint8 and int16 input tensors with
    the tensor's scale and zero point (rounded and clipped to the dtype's
    range); integer inputs of the tensor's dtype are passed through as they
    are. Quantized outputs are dequantized to float32, float outputs are
    returned as float32.

    Args:
        model_content: The bytes of a TFLite flatbuffer. Defaults to `None`.
        model_path: The path of a `.tflite` file. Defaults to `None`.
            Exactly one of `model_content` and `model_path` must be given.
        num_threads: The number of CPU threads of the interpreter, or `None`
            for the interpreter's default. Defaults to `None`.
        preserve_all_tensors: Keep every intermediate tensor readable with
            `get_tensor()` after a batch (slower: no default delegates).
            Defaults to `False`.

    Example:

    ```python
    import keras, numpy as np, tensorflow as tf
    from keras_tflq import LiteRTModel

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    litert_model = LiteRTModel(model_content=content)
    y = litert_model.predict(np.random.rand(100, 4).astype("float32"))
    assert y.shape == (100, 3)
    ```
    """

    def __init__(
        self,
        model_content=None,
        model_path=None,
        num_threads=None,
        preserve_all_tensors=False,
    ):
        if (model_content is None) == (model_path is None):
            raise ValueError(
                "Expected exactly one of `model_content` and `model_path`. "
                f"Received: model_content={_short(model_content)}, "
                f"model_path={model_path}"
            )
        if model_content is not None and not isinstance(
            model_content, (bytes, bytearray, memoryview)
        ):
            raise ValueError(
                "Expected `model_content` to be the bytes of a TFLite model. "
                f"Received: model_content={_short(model_content)}"
            )
        if model_path is not None and not os.path.isfile(model_path):
            raise ValueError(
                "Expected `model_path` to be an existing .tflite file. "
                f"Received: model_path={model_path}"
            )
        if num_threads is not None:
            check_positive_int("num_threads", num_threads)
        self.model_path = model_path
        self.num_threads = num_threads
        with warnings.catch_warnings():
            # Asked for on purpose: no need for the "debugging only" warning.
            warnings.filterwarnings(
                "ignore", message=".*experimental_preserve_all_tensors"
            )
            self._interpreter = Interpreter(
                model_content=(
                    None if model_content is None else bytes(model_content)
                ),
                model_path=model_path,
                num_threads=num_threads,
                experimental_preserve_all_tensors=bool(preserve_all_tensors),
                # XNNPACK does not keep the intermediate tensors it computes.
                experimental_op_resolver_type=(
                    OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                    if preserve_all_tensors
                    else OpResolverType.AUTO
                ),
            )
        self._interpreter.allocate_tensors()
        self._inputs, self._outputs = named_io(self._interpreter)
        self._initial_shapes = [
            tuple(self._interpreter._get_tensor_details(d["index"], 0)["shape"])
            for _, d in self._inputs
        ]
        self._shapes = list(self._initial_shapes)
        self.per_sample = False

    @property
    def input_names(self):
        """The input names, in the Keras model's input order."""
        return [name for name, _ in self._inputs]

    @property
    def output_names(self):
        """The output names, in the Keras model's output order."""
        return [name for name, _ in self._outputs]

    @property
    def input_details(self):
        """One dict per input: `name`, `index`, `shape`, `dtype`,
        `quantization`.

        `shape` has `None` for a dynamic dimension, `dtype` is a numpy dtype
        and `quantization` is `{"scale": float, "zero_point": int}`, with a
        scale of `0.0` for a tensor that is not quantized.
        """
        return [_public_details(n, d) for n, d in self._inputs]

    @property
    def output_details(self):
        """One dict per output, with the same keys as `input_details`."""
        return [_public_details(n, d) for n, d in self._outputs]

    @property
    def tensor_details(self):
        """The interpreter's details of every tensor, for `get_tensor()`."""
        return self._interpreter.get_tensor_details()

    def get_tensor(self, index):
        """Returns one tensor of the last batch, dequantized to float32.

        Intermediate tensors are only meaningful when the model was built
        with `preserve_all_tensors=True` (in per-sample mode they hold the
        last sample only).

        Args:
            index: The tensor index, as in `tensor_details`.
        """
        details = self._interpreter._get_tensor_details(index, 0)
        return dequantize_output(self._interpreter.get_tensor(index), details)

    def predict_on_batch(self, inputs):
        """Runs one batch through the interpreter with a single `invoke()`.

        Args:
            inputs: One array (for a single-input model), a list or tuple of
                arrays in the Keras input order, or a dict of arrays keyed by
                input name. All arrays share the batch dimension.

        Returns:
            One float32 array for a single-output model, else a list of
            arrays in the Keras output order.
        """
        arrays = self._to_input_list(inputs)
        _batch_size(arrays)
        outputs = [
            dequantize_output(r, details)
            for r, (_, details) in zip(
                self._run_batch(arrays), self._outputs, strict=False
            )
        ]
        return outputs[0] if len(outputs) == 1 else outputs

    def predict(self, x, batch_size=32, verbose=0):
        """Runs `x` through the interpreter in batches and concatenates.

        Args:
            x: One array, a list or tuple of arrays in the Keras input order,
                or a dict of arrays keyed by input name.
            batch_size: The largest number of samples per `invoke()`.
                `x` is split into the fewest batches of at most
                `batch_size` samples, all of one size (the last one padded,
                its padding rows dropped from the outputs), so that the
                interpreter is resized at most once per call. Defaults to
                `32`.
            verbose: `0` for silent, `1` or `"auto"` for a progress bar, `2`
                for one line at the end. Defaults to `0`.

        Returns:
            One float32 array for a single-output model, else a list of
            arrays in the Keras output order.
        """
        check_positive_int("batch_size", batch_size)
        if verbose not in (0, 1, 2, "auto"):
            raise ValueError(
                'Expected `verbose` to be one of 0, 1, 2, "auto". '
                f"Received: verbose={verbose}"
            )
        arrays = self._to_input_list(x)
        num_samples = _batch_size(arrays)
        # Batches of one size, so the interpreter is resized (and the
        # delegate re-planned) at most once: a smaller last batch is padded,
        # with fewer padding rows than there are batches.
        num_batches = -(-num_samples // batch_size)
        size = -(-num_samples // num_batches)
        progbar = None
        if verbose:
            progbar = keras.utils.Progbar(
                num_samples, verbose=1 if verbose == "auto" else verbose
            )
        outputs = None
        for start in range(0, num_samples, size):
            stop = min(start + size, num_samples)
            # A smaller last batch is padded with rows of the batch before
            # it (their outputs are dropped); one sample at a time needs no
            # padding.
            begin = start if self.per_sample else max(0, stop - size)
            raw = self._run_batch(
                [
                    quantize_input(a[begin:stop], details)
                    for a, (_, details) in zip(
                        arrays, self._inputs, strict=False
                    )
                ]
            )
            if outputs is None:
                # Filled batch by batch: no list of batches to concatenate.
                outputs = [
                    np.empty(
                        (num_samples, *r.shape[1:]), dequantized_dtype(r, d)
                    )
                    for r, (_, d) in zip(raw, self._outputs, strict=False)
                ]
            for output, r, (_, details) in zip(
                outputs, raw, self._outputs, strict=False
            ):
                dequantize_output(
                    r[start - begin :], details, out=output[start:stop]
                )
            if progbar is not None:
                progbar.update(stop)
        return outputs[0] if len(outputs) == 1 else outputs

    def __repr__(self):
        return (
            f"<LiteRTModel inputs={self.input_names} "
            f"outputs={self.output_names}>"
        )

    def _to_input_list(self, inputs):
        names = self.input_names
        if isinstance(inputs, dict):
            if set(inputs) != set(names):
                raise ValueError(
                    f"Expected a dict with the input names {names}. "
                    f"Received: inputs with keys {sorted(inputs)}"
                )
            arrays = [inputs[name] for name in names]
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) != len(names):
                raise ValueError(
                    f"Expected {len(names)} input arrays for the inputs "
                    f"{names}. Received: inputs with {len(inputs)} arrays"
                )
            arrays = list(inputs)
        else:
            if len(names) != 1:
                raise ValueError(
                    f"Expected a list or a dict of {len(names)} arrays for the "
                    f"inputs {names}. Received: inputs of type "
                    f"{type(inputs).__name__}"
                )
            arrays = [inputs]
        arrays = [np.asarray(a) for a in arrays]
        for (name, details), array in zip(self._inputs, arrays, strict=False):
            expected = details["shape_signature"][1:]
            if array.ndim != len(details["shape_signature"]) or any(
                e not in (-1, r)
                for e, r in zip(expected, array.shape[1:], strict=False)
            ):
                dims = ", ".join(
                    str(e) if e != -1 else "None" for e in expected
                )
                raise ValueError(
                    f"Expected input `{name}` of shape (batch, {dims}). "
                    f"Received: {name} of shape {array.shape}"
                )
        return arrays

    def _resize(self, arrays):
        """Resizes the input tensors to `arrays`; `False` if that fails."""
        shapes = [a.shape for a in arrays]
        if shapes == self._shapes:
            return True
        try:
            for (_, details), shape in zip(self._inputs, shapes, strict=False):
                self._interpreter.resize_tensor_input(
                    details["index"], shape, strict=False
                )
            self._interpreter.allocate_tensors()
            self._shapes = shapes
            return True
        except (RuntimeError, ValueError):
            if any(d["shape_signature"][0] != 1 for _, d in self._inputs):
                raise
            # A fixed-batch artifact that does not resize: restore batch 1.
            for (_, details), shape in zip(
                self._inputs, self._initial_shapes, strict=False
            ):
                self._interpreter.resize_tensor_input(
                    details["index"], shape, strict=False
                )
            self._interpreter.allocate_tensors()
            self._shapes = list(self._initial_shapes)
            self.per_sample = True
            return False

    def _run_batch(self, arrays):
        """The raw (still quantized) outputs of one batch."""
        if self.per_sample or not self._resize(arrays):
            outputs = [
                self._invoke([a[i : i + 1] for a in arrays])
                for i in range(len(arrays[0]))
            ]
            return [np.concatenate(o) for o in zip(*outputs, strict=False)]
        return self._invoke(arrays)

    def _invoke(self, arrays):
        for (_, details), array in zip(self._inputs, arrays, strict=False):
            if array.dtype != details["dtype"] or not array.flags.c_contiguous:
                array = quantize_input(array, details)
            self._interpreter.set_tensor(details["index"], array)
        # Fused sequence ops (UNIDIRECTIONAL_SEQUENCE_LSTM) keep their state
        # in variable tensors between invokes; every batch starts from zero.
        self._interpreter.reset_all_variables()
        self._interpreter.invoke()
        return [
            self._interpreter.get_tensor(details["index"])
            for _, details in self._outputs
        ]


def _public_details(name, details):
    scale, zero_point = details["quantization"]
    return {
        "name": name,
        "index": int(details["index"]),
        "shape": tuple(
            None if d == -1 else int(d) for d in details["shape_signature"]
        ),
        "dtype": np.dtype(details["dtype"]),
        "quantization": {"scale": float(scale), "zero_point": int(zero_point)},
    }


def _batch_size(arrays):
    sizes = {len(a) for a in arrays}
    if len(sizes) != 1:
        raise ValueError(
            "Expected all inputs to have the same batch size. "
            f"Received: batch sizes {[len(a) for a in arrays]}"
        )
    size = sizes.pop()
    if size == 0:
        raise ValueError("Expected at least one sample. Received: 0 samples")
    return size



def _short(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
