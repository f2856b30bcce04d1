"""Running the TFLite converter in a child process, so a crash in its
native code cannot take the training process down.

The converter is C++; on some models it does not raise but kills the
process (TF 2.21: int8 conversion of a Keras 3 `LSTM` with a fixed batch
dies with a segmentation fault, tensorflow#101050). Inside `fit()` that
would lose the trained model. Here the parent traces the model to a
SavedModel (Python, safe) and saves the calibration samples; a fresh
`python` converts them and writes the bytes back. A child killed by a
signal becomes a `ConversionError` in the parent, which stays alive.

Isolation costs a process start and a TensorFlow import (seconds), so it is
used only on request (`isolate_conversion=True`). Recurrent models, whose
int8 conversion used to crash, now convert in process through the
sequence-export route of `converter.py`, which the child does not take.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile

import keras
import numpy as np

# Set in a test's environment, the child aborts as a crashing converter does.
SIMULATE_CRASH_ENV = "KERAS_TFLQ_SIMULATE_CONVERTER_CRASH"
_RECURRENT = (keras.layers.RNN,)


def has_recurrent_layers(model):
    """Whether `model` holds a recurrent layer (LSTM, GRU, SimpleRNN,
    ConvLSTM, also inside Bidirectional or nested models)."""
    return any(
        isinstance(layer, _RECURRENT)
        for layer in model._flatten_layers(include_self=True, recursive=True)
    )


def check_isolate(isolate_conversion):
    """`isolate_conversion` if it is True, False or None, else a
    ValueError."""
    if isolate_conversion not in (None, True, False):
        raise ValueError(
            "Expected `isolate_conversion` to be True, False or None. "
            f"Received: isolate_conversion={isolate_conversion!r}"
        )
    return isolate_conversion


def needs_isolation(model, isolate):
    """Whether to convert `model` in a child process: only when asked
    (`isolate=True`). `None` converts in process: the crash it used to
    guard against (int8 `LSTM`) is gone since recurrent models convert
    through the sequence-export route, which the child does not take."""
    del model  # No model is isolated unasked any more.
    return bool(isolate)


def _save_model(model, folder):
    """Traces `model` to a SavedModel whose signature takes the inputs by
    their Keras input names (the keys of the calibration samples)."""
    import functools

    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    from keras_tflq.conversion.model_inputs import ModelInputs

    inputs = ModelInputs(model).structure
    argument = keras.tree.map_structure(
        lambda tensor: tf.TensorSpec(
            tensor.shape, tensor.dtype, name=tensor.name
        ),
        inputs,
    )
    signature = [argument]
    archive.add_endpoint(
        "serve", functools.partial(model.__call__, training=False), signature
    )
    archive.write_out(folder, verbose=False)


def _signal_name(returncode):
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _advice(model, mode):
    tips = []
    if has_recurrent_layers(model):
        tips.append(
            "recurrent layers convert to integer ops when unrolled "
            "(unroll=True, with a fixed sequence length)"
        )
    if mode in ("int8", "int16x8"):
        tips.append("mode='dynamic' or 'float32' (no full-integer pass)")
    tips.append("another TensorFlow version")
    return "; ".join(tips)


def convert_isolated(
    model,
    mode,
    representative_dataset=None,
    input_type="float32",
    output_type="float32",
    allow_float_ops=False,
):
    """Converts `model` in a child process; returns `(content, log)`.

    Args:
        model: A built Keras model.
        mode: The export mode.
        representative_dataset: Generator function of calibration samples
            keyed by input name. Defaults to `None`.
        input_type: Input tensor type name. Defaults to `"float32"`.
        output_type: Output tensor type name. Defaults to `"float32"`.
        allow_float_ops: Allow float fallback in integer modes.
            Defaults to `False`.

    Returns:
        The TFLite bytes and what the converter printed.

    Raises:
        ConversionError: The converter rejected the model or crashed (the
            child died from a signal); the message names the mode, the
            model and what to try.

    Example:

    >>> content, log = convert_isolated(model, "int8", calibration_samples)
    """
    from keras_tflq.conversion.errors import ConversionError
    from keras_tflq.conversion.native_output import capture_native_output

    with tempfile.TemporaryDirectory(prefix="keras_tflq_convert_") as folder:
        saved_model = os.path.join(folder, "saved_model")
        with capture_native_output():
            _save_model(model, saved_model)
        samples = []
        if representative_dataset is not None:
            samples = list(representative_dataset())
        np.savez(
            os.path.join(folder, "samples.npz"),
            **{
                f"{index}/{name}": np.asarray(array)
                for index, sample in enumerate(samples)
                for name, array in sample.items()
            },
        )
        job = {
            "mode": mode,
            "input_type": input_type,
            "output_type": output_type,
            "allow_float_ops": allow_float_ops,
            "samples": len(samples),
        }
        with open(os.path.join(folder, "job.json"), "w") as handle:
            json.dump(job, handle)
        log_path = os.path.join(folder, "log.txt")
        with open(log_path, "wb") as log:
            completed = subprocess.run(
                [
                    sys.executable,
                    "-X",
                    "faulthandler",
                    "-m",
                    "keras_tflq.conversion.isolated_child",
                    folder,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                check=False,
            )
        with open(log_path, encoding="utf-8", errors="replace") as handle:
            log = handle.read()
        where = f"model {model.name!r} in mode={mode!r}"
        if completed.returncode < 0:
            crash = _signal_name(completed.returncode)
            raise ConversionError(
                f"The TFLite converter crashed ({crash} in its native code) "
                f"converting {where}; it ran in a "
                "separate process, so training is unaffected. Try: "
                f"{_advice(model, mode)}.",
                converter_log=log,
            )
        error_path = os.path.join(folder, "error.txt")
        if completed.returncode != 0 or os.path.exists(error_path):
            detail = "the conversion process failed"
            if os.path.exists(error_path):
                with open(error_path, encoding="utf-8") as handle:
                    detail = handle.read().strip()
            raise ConversionError(
                f"The TFLite converter rejected {where}: {detail}",
                converter_log=log,
            )
        with open(os.path.join(folder, "model.tflite"), "rb") as handle:
            return handle.read(), log


def _child_env():
    """The parent's environment, with this package importable."""
    root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ)
    env["PYTHONPATH"] = root if not path else os.pathsep.join([root, path])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env
