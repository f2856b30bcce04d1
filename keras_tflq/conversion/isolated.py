"""Running the TFLite converter in a child process where it is known to
crash, so a crash in its native code cannot take the training process down.

The converter is C++; on some models it does not raise but kills the
process. `CRASH_PRONE_LAYERS` names the layers for which that is known
(see there); a model holding one is converted in a child process under
`isolate_conversion="auto"` (the default), every other model in process.

The child runs the very conversion of the parent: the parent saves the
model (already the float32 twin of a mixed-precision model) as `.keras`
with the calibration samples and its input names; a child `python` loads
it and calls `convert_and_inspect` with the same mode and options
(`isolate=False`), so the sequence-export route, the int16x8 bias widening
and the integer check all run there as they would here, and sends back the
bytes and their inspection. A child killed by a signal becomes a
`ConversionError` in the parent, which stays alive.

A cold child costs a process start and a TensorFlow import (tens of seconds
on a loaded 2-core machine, against ~5 s for the LSTM conversion itself),
so one child is kept warm for successive conversions (`shutdown` ends it);
it is restarted after a crash.
"""

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_tflq.argument_checks import check_one_of
from keras_tflq.conversion.errors import ConversionError

CRASH_PRONE_LAYERS = (keras.layers.RNN,)
"""Layers for which the converter's native code is known to crash.

Every Keras recurrent layer is a `keras.layers.RNN`: `LSTM`, `GRU`,
`SimpleRNN`, `ConvLSTM1D/2D/3D` and `RNN` with any cell. Their Keras 3
graphs (a `while` loop over TensorList ops) have killed the process in
the converter's native code: TF 2.21's int8 conversion of
`Sequential([Input((8, 8), batch_size=1), LSTM(16), Dense(4)])` dies with
a segmentation fault (tensorflow#101050, LiteRT#557).
keras_tflq now exports them through its sequence-export route, but that
route leans on converter passes with this history, so a model holding
such a layer anywhere (nested models, `Bidirectional`, `TimeDistributed`
and QAT wrappers are searched) converts in a child process. No crash is
known for other layers, and a child costs a process start, a TensorFlow
import and a model load, so they convert in process.
"""

ISOLATE_CHOICES = (True, False, "auto")
"""The values of `isolate_conversion` (`None` is read as `"auto"`)."""


def check_isolate(isolate_conversion):
    """`isolate_conversion` (`None` read as `"auto"`) if it is one of
    `ISOLATE_CHOICES`, else a ValueError."""
    if isolate_conversion is None:
        return "auto"
    return check_one_of(
        "isolate_conversion", isolate_conversion, ISOLATE_CHOICES
    )


def crash_prone_layers(model):
    """The names of `model`'s layers that are `CRASH_PRONE_LAYERS`, at any
    depth."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        return []
    return [
        layer.name
        for layer in flatten(include_self=True, recursive=True)
        if isinstance(layer, CRASH_PRONE_LAYERS)
    ]


def needs_isolation(model, isolate):
    """Whether to convert `model` in a child process.

    Args:
        model: The model to convert.
        isolate: `True` (always), `False` (never), or `"auto"`/`None`:
            when `model` holds one of `CRASH_PRONE_LAYERS`.

    Returns:
        A bool.
    """
    if isolate is None or isolate == "auto":
        return bool(crash_prone_layers(model))
    return bool(isolate)


def _signal_name(returncode):
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _advice(model, mode):
    tips = []
    layers = crash_prone_layers(model)
    if layers:
        tips.append(
            f"its recurrent layers ({', '.join(layers)}) convert without "
            "the fused op when unrolled (unroll=True)"
        )
    if mode in ("int8", "int16x8"):
        tips.append("mode='dynamic' or 'float32' (no full-integer pass)")
    tips.append("another TensorFlow version")
    return "; ".join(tips)


def _custom_modules(model):
    """The modules defining `model`'s layer classes outside Keras, for the
    child to import (which registers their serializable classes)."""
    modules = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        module = type(layer).__module__
        if module != "__main__" and module.split(".")[0] not in (
            "keras",
            "tf_keras",
        ):
            modules.add(module)
    return sorted(modules)


def convert_isolated(model, mode, representative_dataset=None, **options):
    """Runs `convert_and_inspect(model, mode, ...)` in a child process.

    Args:
        model: A built Keras model (the graph to convert, i.e. the float32
            twin of a mixed-precision model).
        mode: The export mode.
        representative_dataset: Generator function of calibration samples
            keyed by input name. Defaults to `None`.
        **options: The other (JSON-serializable) options of
            `convert_and_inspect`: `input_type`, `output_type`,
            `allow_float_ops`.

    Returns:
        `(content, inspection)`, as `convert_and_inspect` returns them.

    Raises:
        ConversionError: The converter rejected the model (the message is
            the one an in-process conversion gives), the child could not
            load the model, or the converter crashed (the child died from
            a signal); the message names the mode, the model and what to
            try.

    Example:

    >>> content, inspection = convert_isolated(model, "int8", samples)
    """
    from keras_tflq.conversion.model_inputs import ModelInputs
    from keras_tflq.conversion.native_output import capture_native_output
    from keras_tflq.legacy.tf_keras_models import is_tf_keras_model

    with tempfile.TemporaryDirectory(prefix="keras_tflq_convert_") as folder:
        with capture_native_output():
            model.save(os.path.join(folder, "model.keras"))
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
            "name": model.name,
            "mode": mode,
            "options": options,
            "samples": len(samples),
            "tf_keras": is_tf_keras_model(model),
            "input_names": ModelInputs(model).names,
            "modules": _custom_modules(model),
            "sys_path": [entry for entry in sys.path if entry],
        }
        with open(os.path.join(folder, "job.json"), "w") as handle:
            json.dump(job, handle)
        returncode, log = _run_job(folder)
        if returncode < 0:
            raise ConversionError(
                f"The TFLite converter crashed ({_signal_name(returncode)} "
                "in its native code) converting model "
                f"{model.name!r} in mode={mode!r}; it ran in a separate "
                "process, so this one is unaffected. Try: "
                f"{_advice(model, mode)}.",
                converter_log=log,
            )
        error_path = os.path.join(folder, "error.json")
        if os.path.exists(error_path):
            with open(error_path, encoding="utf-8") as handle:
                error = json.load(handle)
            raise ConversionError(
                error["message"], converter_log=error["converter_log"] or log
            )
        if returncode != 0:
            raise ConversionError(
                f"The conversion process of model {model.name!r} in "
                f"mode={mode!r} failed (exit status {returncode}).",
                converter_log=log,
            )
        with open(os.path.join(folder, "inspection.json")) as handle:
            inspection = json.load(handle)
        with open(os.path.join(folder, "model.tflite"), "rb") as handle:
            return handle.read(), inspection


class _Worker:
    """A conversion child kept warm between conversions.

    It reads one job folder a line on stdin and answers its exit status on
    the descriptor that was its stdout; everything it prints (TensorFlow's
    start-up lines, a crash's traceback) goes to a log file. It keeps the
    environment it was started with, and ends at the end of its stdin, so
    with this process too.
    """

    def __init__(self):
        self.log = tempfile.TemporaryFile(prefix="keras_tflq_child_log_")
        self.process = _spawn(_child_env(), self.log)

    def run(self, folder):
        """Runs one job; returns `(status, log)`: a negative status is the
        signal that killed the child, the log what it printed meanwhile."""
        self.log.seek(0, os.SEEK_END)
        offset = self.log.tell()
        try:
            self.process.stdin.write(f"{folder}\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        status = int(answer) if answer.strip() else self.process.wait()
        self.log.seek(offset)
        return status, self.log.read().decode("utf-8", errors="replace")

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.log.close()


_worker = None


def _spawn(env, log):
    """Starts a conversion child (`isolated_child`) with `env`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-X",
            "faulthandler",
            "-m",
            "keras_tflq.conversion.isolated_child",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )


def _run_job(folder):
    """Runs the job in `folder` in the warm child, started (or restarted,
    when the last one died) as needed; returns `(status, log)`."""
    global _worker
    if _worker is not None and _worker.process.poll() is not None:
        shutdown()
    if _worker is None:
        _worker = _Worker()
    status, log = _worker.run(folder)
    if status < 0:
        shutdown()
    return status, log


def shutdown():
    """Ends the warm conversion child, if one runs (`TFLiteExport` calls it
    when training ends; it also ends with this process)."""
    global _worker
    if _worker is not None:
        worker, _worker = _worker, None
        worker.close()


atexit.register(shutdown)


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
