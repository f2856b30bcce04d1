"""The child process of `isolated.convert_isolated` (not for direct use).

`python -m keras_tflq.conversion.isolated_child FOLDER` converts the
SavedModel in FOLDER with the settings of `FOLDER/job.json` and the
calibration samples of `FOLDER/samples.npz`, and writes
`FOLDER/model.tflite`, or `FOLDER/error.txt` if the converter raises.
"""

import json
import os
import sys


def main(folder):
    import numpy as np
    import tensorflow as tf

    from keras_tflq.conversion.converter import diagnostic
    from keras_tflq.conversion.isolated import SIMULATE_CRASH_ENV
    from keras_tflq.conversion.modes import configure_converter

    with open(os.path.join(folder, "job.json")) as handle:
        job = json.load(handle)
    with np.load(os.path.join(folder, "samples.npz")) as data:
        samples = [{} for _ in range(job["samples"])]
        for key in data.files:
            index, name = key.split("/", 1)
            samples[int(index)][name] = data[key]

    def representative_dataset():
        yield from samples

    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.path.join(folder, "saved_model")
    )
    configure_converter(
        converter,
        job["mode"],
        representative_dataset=representative_dataset if samples else None,
        input_type=job["input_type"],
        output_type=job["output_type"],
        allow_float_ops=job["allow_float_ops"],
    )
    if os.environ.get(SIMULATE_CRASH_ENV) == "1":
        os.abort()  # What a crash in the converter's native code does.
    try:
        content = converter.convert()
    except Exception as error:  # noqa: BLE001 - reported to the parent
        with open(os.path.join(folder, "error.txt"), "w") as handle:
            handle.write(diagnostic(error))
        return 1
    with open(os.path.join(folder, "model.tflite"), "wb") as handle:
        handle.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
