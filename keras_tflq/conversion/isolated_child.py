"""The child process of `isolated.convert_isolated` (not for direct use).

`python -m keras_tflq.conversion.isolated_child` reads job folders, one a
line, on stdin. For each FOLDER it loads `FOLDER/model.keras`, calls
`convert_and_inspect` on it with the mode and options of
`FOLDER/job.json` and the calibration samples of `FOLDER/samples.npz`
(the in-process conversion, `isolate=False`), writes
`FOLDER/model.tflite` with `FOLDER/inspection.json`, or
`FOLDER/error.json` (the message and converter log of the error), and
answers the job's status (`0` or `1`) on a line of its original stdout;
all it prints goes to stderr. It ends at the end of stdin.
"""

import importlib
import json
import os
import signal
import sys

SIMULATE_CRASH_ENV = "KERAS_TFLQ_SIMULATE_CONVERTER_CRASH"
"""Set to `"1"` in a test's environment, the child kills itself with
SIGSEGV just before converting, as a crash in the converter's native code
does. Read only here, in the child."""


def _load_model(folder, job):
    for entry in reversed(job["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for module in job["modules"]:
        importlib.import_module(module)  # registers its Keras classes
    path = os.path.join(folder, "model.keras")
    if job["tf_keras"]:
        import tf_keras

        model = tf_keras.models.load_model(path, compile=False)
    else:
        import keras

        model = keras.saving.load_model(path, compile=False)
    _rename_inputs(model, job["input_names"])
    return model


def _rename_inputs(model, names):
    """Gives the loaded model's input tensors the parent's names.

    They name the artifact's inputs and key the calibration samples, and
    loading renames an unnamed input (`keras_tensor` becomes the name of
    its `InputLayer`).
    """
    import keras

    from keras_tflq.conversion.model_inputs import ModelInputs

    tensors = keras.tree.flatten(ModelInputs(model).structure)
    for tensor, name in zip(tensors, names, strict=True):
        if tensor.name != name:
            tensor.name = name


def _samples(folder, count):
    import numpy as np

    with np.load(os.path.join(folder, "samples.npz")) as data:
        samples = [{} for _ in range(count)]
        for key in data.files:
            index, name = key.split("/", 1)
            samples[int(index)][name] = data[key]
    return samples


def _write_error(folder, message, converter_log=None):
    with open(os.path.join(folder, "error.json"), "w") as handle:
        json.dump({"message": message, "converter_log": converter_log}, handle)
    return 1


def convert_job(folder):
    """Runs the job in `folder`; returns `0`, or `1` with `error.json`."""
    with open(os.path.join(folder, "job.json")) as handle:
        job = json.load(handle)
    try:
        model = _load_model(folder, job)
    except Exception as error:  # noqa: BLE001 - reported to the parent
        return _write_error(
            folder,
            "The conversion process could not load model "
            f"{job['name']!r} to convert it in mode={job['mode']!r} "
            f"({type(error).__name__}: "
            f"{error}). Define custom layers in an importable module, "
            "registered with keras.saving.register_keras_serializable, or "
            "pass isolate_conversion=False to convert in process.",
        )
    samples = _samples(folder, job["samples"])

    def representative_dataset():
        yield from samples

    from keras_tflq.conversion.converter import convert_and_inspect
    from keras_tflq.conversion.errors import ConversionError

    if os.environ.get(SIMULATE_CRASH_ENV) == "1":
        os.kill(os.getpid(), signal.SIGSEGV)
    try:
        content, inspection = convert_and_inspect(
            model,
            job["mode"],
            representative_dataset=representative_dataset if samples else None,
            isolate=False,
            **job["options"],
        )
    except ConversionError as error:
        return _write_error(folder, error.message, error.converter_log)
    with open(os.path.join(folder, "inspection.json"), "w") as handle:
        json.dump(inspection, handle)
    with open(os.path.join(folder, "model.tflite"), "wb") as handle:
        handle.write(content)
    return 0


def main():
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints go to the log, answers alone to the parent
    for line in sys.stdin:
        try:
            status = convert_job(line.strip())
        except Exception as error:  # noqa: BLE001 - reported to the parent
            status = _write_error(
                line.strip(),
                f"The conversion process failed: {type(error).__name__}: "
                f"{error}",
            )
        answers.write(f"{status}\n")
        import keras

        keras.backend.clear_session()  # forget the converted model
    return 0


if __name__ == "__main__":
    sys.exit(main())
