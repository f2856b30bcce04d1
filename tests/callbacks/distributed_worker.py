"""One training process of the tf.distribute tests (run as a script).

`python distributed_worker.py OUT_DIR MODES RESULT` trains, for each of the
comma-separated MODES in turn, a small QAT CNN with batch normalization on
fixed digits batches with `QuantizationSchedule` and
`TFLiteExport(mode="int8")` (artifacts in OUT_DIR/<mode>), then writes the
JSON file RESULT, a dict by mode of: whether this process is the chief, the
model's variables (weights, ranges, BatchNormalization statistics), the
export report and, on the chief, how far a single-process export of the
same weights is from the artifact on the validation data. A mode is
`single` (no strategy), `mirrored` (MirroredStrategy over 2 logical CPUs)
or `multi_worker` (MultiWorkerMirroredStrategy; TF_CONFIG from the
environment). With `KERAS_TFLQ_TEST_FAIL_EXPORT=1`, the chief's exports
fail as a converter failure would.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT_DIR, MODES, RESULT = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
if "mirrored" in MODES:
    # Must run before TensorFlow initializes its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_tflq as tflq  # noqa: E402
from keras_tflq.callbacks import tflite_export  # noqa: E402
from keras_tflq.conversion.errors import ConversionError  # noqa: E402


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy, with Keras 3's fit() made to work on it.

    Keras 3.15's TensorFlow trainer calls `strategy.reduce` on a whole
    `(x, y)` batch and with `axis=0` on scalar metrics, which this strategy
    rejects; reducing each value, over no axis for scalars, is what it
    meant (the workaround the README shows).
    """
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    reduce = strategy.reduce

    def reduce_each(reduce_op, value, axis=None):
        def one(v):
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return reduce(reduce_op, v, axis=axis if rank else None)

        return tf.nest.map_structure(one, value)

    strategy.reduce = reduce_each
    return strategy


def make_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            # No bias before BatchNormalization: its gradient is zero but
            # for rounding, which Adam would turn into steps of noise.
            keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ],
        name="digits_qat",
    )
    model = tflq.quantize_model(model)
    model.compile(
        keras.optimizers.Adam(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(mode, out_dir):
    # First: a multi-worker strategy must configure TensorFlow's collective
    # ops before anything (here, tf.data) initializes its context.
    if mode != "multi_worker":  # (one mode per process; see above)
        keras.backend.clear_session()  # The same layer names in each mode.
    if mode == "single":
        strategy = tf.distribute.get_strategy()
    elif mode == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = multi_worker_strategy()
    digits = load_digits()
    x = (digits.images[:256] / 16.0).astype("float32")[..., None]
    y = digits.target[:256].astype("int32")
    batches = tf.data.Dataset.from_tensor_slices((x[:192], y[:192]))
    batches = batches.batch(32)
    validation = tf.data.Dataset.from_tensor_slices((x[192:], y[192:]))
    validation = validation.batch(32)
    with strategy.scope():
        model = make_model()
    if os.environ.get("KERAS_TFLQ_TEST_FAIL_EXPORT") == "1":

        def failing_export(*args, **kwargs):
            raise ConversionError("simulated converter failure")

        tflite_export.export_artifact = failing_export
    export = tflq.TFLiteExport(
        os.path.join(out_dir, "digits_{mode}.tflite"), verbose=0
    )
    schedule = tflq.QuantizationSchedule(start=0, freeze_batch_norm=1)
    result = {"mode": mode}
    try:
        model.fit(
            batches,
            validation_data=validation,
            epochs=2,
            callbacks=[schedule, export],
            verbose=0,
        )
    except Exception as error:  # noqa: BLE001 - reported to the test
        result["error"] = f"{type(error).__name__}: {error}"
    result["chief"] = bool(strategy.extended.should_checkpoint)
    result["replicas"] = strategy.num_replicas_in_sync
    result["variables"] = {
        v.path: np.asarray(v.numpy()).tolist() for v in model.variables
    }
    result["report"] = export.report
    if export.exported_path and "error" not in result:
        single = make_model()
        single.set_weights(model.get_weights())
        reference = os.path.splitext(RESULT)[0] + f"_{mode}_single.tflite"
        tflq.export_tflite(single, reference)
        exported = tflq.LiteRTModel(model_path=export.exported_path)
        expected = tflq.LiteRTModel(model_path=reference)
        result["max_output_difference"] = float(
            np.max(
                np.abs(
                    exported.predict(x[192:]).astype("float64")
                    - expected.predict(x[192:]).astype("float64")
                )
            )
        )
    return result


def main():
    results = {}
    for mode in MODES:
        out_dir = os.path.join(OUT_DIR, mode)
        os.makedirs(out_dir, exist_ok=True)
        results[mode] = train(mode, out_dir)
    with open(RESULT, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
