"""Measurement (issue 11): arena and flash of TFLite Micro artifacts from fit().

Two models, each trained briefly and exported by
`TFLiteExport(target="micro")` in every mode TFLite Micro runs (int8,
int16x8, float32), in one `fit()` call per model:

* the digits CNN of the tests (Conv2D 8 + MaxPool + Dense 10) and the
  quickstart's (examples/quickstart.py: Conv2D 16, Conv2D 32, MaxPool,
  Dense 64, Dense 10) on sklearn's 8x8 digits;
* a keyword-spotting-sized DS-CNN (the "small" depthwise-separable CNN of
  Hello Edge, Zhang et al. 2017: Conv2D 64 (10x4, stride 2), four
  DepthwiseConv 3x3 + Conv 1x1 blocks of 64 with BatchNorm and ReLU,
  average pool, Dense 12) on a 49x10 input (49 frames of 10 MFCCs). No
  audio is downloaded: its inputs are synthetic MFCC-like features, one
  random pattern per class plus noise, so its accuracy means nothing; the
  arena and flash depend only on the architecture.

For each artifact: the smallest tensor arena TFLM allocates it in (found by
bisection, on this 64-bit host), the flash the model array takes, the
resolver ops and how TFLM's outputs agree with LiteRT's on 32 validation
samples. Prints one JSON line, then a markdown table; writes
bench/results/micro_sizes.md.

Usage:
    python bench/micro_sizes.py
"""

import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _report  # noqa: E402  (bench/ is on sys.path when a script runs)
import keras  # noqa: E402
import numpy as np  # noqa: E402

MODES = ("int8", "int16x8", "float32")


def digits_cnn():
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def quickstart_cnn():
    examples = os.path.join(os.path.dirname(__file__), "..", "examples")
    sys.path.insert(0, examples)
    import quickstart

    model = quickstart.build_model()
    return keras.Model(model.inputs, model.outputs, name="quickstart_cnn")


def ds_cnn_small(classes=12):
    inputs = keras.Input((49, 10, 1), name="mfcc")
    x = keras.layers.Conv2D(64, (10, 4), strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    for _ in range(4):
        x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(64, 1)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="ds_cnn_small")


def digits_data():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    return x[:1400], data.target[:1400], x[1400:], data.target[1400:]


def kws_like_data(classes=12, train=960, validation=240, seed=0):
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, 1, (classes, 49, 10, 1)).astype("float32")
    y = rng.integers(0, classes, train + validation)
    x = patterns[y] + rng.normal(0, 1, (len(y), 49, 10, 1)).astype("float32")
    return x[:train], y[:train], x[train:], y[train:]


def measure(model, data, epochs, folder):
    x, y, x_val, y_val = data
    model.compile(
        keras.optimizers.Adam(0.005),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    exports = {mode: _export(folder, mode) for mode in MODES}
    started = time.perf_counter()
    model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=32,
        callbacks=list(exports.values()),
        verbose=0,
    )
    seconds = time.perf_counter() - started
    rows = {}
    for mode, export in exports.items():
        micro = export.report["micro"]
        rows[mode] = {
            "arena_bytes": micro["arena_bytes"],
            "flash_bytes": micro["flash_bytes"],
            "ops": micro["ops"],
            "agreement": micro["litert_agreement"]["agreement"],
            "val_tflite_accuracy": export.report["tflite_metrics"].get(
                "accuracy"
            ),
        }
    return {
        "model": model.name,
        "params": int(model.count_params()),
        "input_shape": list(model.input_shape[1:]),
        "epochs": epochs,
        "fit_and_export_seconds": round(seconds, 1),
        "artifacts": rows,
    }


def _export(folder, mode):
    from keras_tflq import TFLiteExport

    return TFLiteExport(
        os.path.join(folder, "{name}_{mode}.tflite"),
        mode=mode,
        target="micro",
        input_type="float32" if mode == "int16x8" else None,
        verbose=0,
    )


def markdown(results):
    lines = [
        "| model | params | mode | arena (bytes) | flash (bytes) "
        "| TFLM vs LiteRT | resolver ops |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for result in results:
        for mode, row in result["artifacts"].items():
            ops = ", ".join(op[3:] for op in row["ops"])
            lines.append(
                f"| {result['model']} {tuple(result['input_shape'])} "
                f"| {result['params']:,} | {mode} | {row['arena_bytes']:,} "
                f"| {row['flash_bytes']:,} | {row['agreement']} | {ops} |"
            )
    return "\n".join(lines)


def main():
    import tflite_micro

    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        results = [
            measure(digits_cnn(), digits_data(), 5, folder),
            measure(quickstart_cnn(), digits_data(), 5, folder),
            measure(ds_cnn_small(), kws_like_data(), 2, folder),
        ]
    result = {
        "benchmark": "micro_sizes",
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": _report.machine_info(
            {"tflite_micro": tflite_micro.__version__}
        ),
    }
    table = markdown(results)
    print(json.dumps(result))
    print()
    print(table)
    _report.write_results(
        os.path.join(os.path.dirname(__file__), "results", "micro_sizes.md"),
        "TFLite Micro arena and flash (bench/micro_sizes.py)",
        result,
        table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
