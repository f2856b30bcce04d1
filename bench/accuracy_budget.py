"""Accuracy budget: float32, int8, int16x8, max_drop and QAT int8 side by side.

Two digits models with an outlier unit (one unit of a hidden layer scaled
x500 and its weights in the next layer scaled 1/500: the same function, the
shape of outlier channels in real models), the case where full int8 breaks:
an MLP (outlier in a Dense layer) and a CNN (outlier channel in a Conv2D).
For each, from the same weights: the float32, full int8 and int16x8
exports, the `max_drop={"accuracy": 0.02}` export, and QAT int8
(`keras_tflq.quantize_model`, fine-tuned a few epochs from the same
weights, then exported). Validation accuracy of each artifact (LiteRT),
size, single-sample LiteRT latency (default delegates, XNNPACK, 1 thread,
median of timed invokes) and the time the search or the fine-tuning took.
Prints one JSON line and a markdown table.

    python bench/accuracy_budget.py [--output bench/results/accuracy_budget.md]
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _report  # noqa: E402
import numpy as np  # noqa: E402

OUTLIER_SCALE = 500.0
MAX_DROP = {"accuracy": 0.02}
QAT_EPOCHS = 5
LATENCY_RUNS = 2000


def digits(flat):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")
    x = x.reshape(len(x), -1) if flat else x[..., None]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], data.target[order].astype("int32")
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def add_outlier(layer, next_layer):
    kernel, bias = layer.get_weights()
    kernel[..., 0] *= OUTLIER_SCALE
    bias[0] *= OUTLIER_SCALE
    layer.set_weights([kernel, bias])
    kernel, bias = next_layer.get_weights()
    if kernel.ndim == 2:
        kernel[0, :] /= OUTLIER_SCALE
    else:
        kernel[..., 0, :] /= OUTLIER_SCALE
    next_layer.set_weights([kernel, bias])


def outlier_mlp():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,), name="pixels"),
            keras.layers.Dense(32, activation="relu", name="dense_in"),
            keras.layers.Dense(32, activation="relu", name="outlier"),
            keras.layers.Dense(32, activation="relu", name="dense_mid"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="outlier_mlp",
    )
    return model, True, 12, ("outlier", "dense_mid")


def outlier_cnn():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(
        16, 3, padding="same", activation="relu", name="conv_a"
    )(inputs)
    h = keras.layers.Conv2D(
        32, 3, padding="same", activation="relu", name="conv_b"
    )(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inputs, outputs, name="outlier_cnn")
    return model, False, 6, ("conv_a", "conv_b")


MODELS = {"outlier_mlp": outlier_mlp, "outlier_cnn": outlier_cnn}


def compile_model(model, learning_rate):
    import keras

    model.compile(
        keras.optimizers.Adam(learning_rate)
        if learning_rate
        else keras.optimizers.SGD(0.0),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def latency_ms(path):
    """Median time of one `invoke()` on one sample (XNNPACK, 1 thread)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    for details in interpreter.get_input_details():
        interpreter.set_tensor(
            details["index"], np.zeros(details["shape"], details["dtype"])
        )
    for _ in range(50):
        interpreter.invoke()
    times = []
    for _ in range(LATENCY_RUNS):
        started = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1000, 4)


def row(model_name, variant, report, path, seconds=None, extra=None):
    return {
        "model": model_name,
        "variant": variant,
        "accuracy": round(report["tflite_metrics"]["accuracy"], 4),
        "bytes": report["bytes"],
        "latency_ms": latency_ms(path),
        "seconds": None if seconds is None else round(seconds, 2),
        **(extra or {}),
    }


def save_chart(model, path, report, x_val, charts, label):
    """The per-layer error chart of one artifact, copied to `charts`."""
    import shutil

    from keras_tflq.conversion.layer_report import write_layer_report_for

    report = write_layer_report_for(
        model, path, report, {_input_name(model): x_val[:64]}
    )
    os.makedirs(charts, exist_ok=True)
    target = os.path.join(charts, f"{model.name}_{label}_layers.png")
    shutil.copyfile(report["layer_report"]["png"], target)
    return target


def _input_name(model):
    return model.inputs[0].name


def bench_model(name, workdir, charts=None):
    import keras

    import keras_tflq

    model, flat, epochs, outlier_pair = MODELS[name]()
    (x, y), (x_val, y_val) = digits(flat)
    compile_model(model, 1e-3)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    add_outlier(
        model.get_layer(outlier_pair[0]), model.get_layer(outlier_pair[1])
    )
    compile_model(model, 0.0)
    keras_accuracy = model.evaluate(x_val, y_val, verbose=0, return_dict=True)[
        "accuracy"
    ]
    weights = model.get_weights()
    rows = []
    for mode in ("float32", "int8", "int16x8"):
        path = os.path.join(workdir, f"{name}_{mode}.tflite")
        report = keras_tflq.export_tflite(
            model,
            path,
            mode=mode,
            calibration_data=x_val,
            validation_data=(x_val, y_val),
        )
        rows.append(row(name, mode, report, path))
        if charts and mode == "int8":
            save_chart(model, path, report, x_val, charts, mode)
    # The budgeted export: the callback, in a fit() that does not move the
    # weights (learning rate 0), calibrated and scored on the validation data.
    path = os.path.join(workdir, f"{name}_budget.tflite")
    export = keras_tflq.TFLiteExport(
        path, mode="int8", max_drop=MAX_DROP, verbose=0
    )
    model.fit(
        x[:32],
        y[:32],
        validation_data=(x_val, y_val),
        epochs=1,
        verbose=0,
        callbacks=[export],
    )
    report = export.report
    if charts:
        save_chart(model, path, report, x_val, charts, "budget")
    precisions = list(report["layer_precision"].values())
    rows.append(
        row(
            name,
            f"max_drop={MAX_DROP}",
            report,
            path,
            seconds=report["search"]["seconds"],
            extra={
                "budget_met": report["budget_met"],
                "conversions": report["search"]["conversions"],
                "layer_precision": report["layer_precision"],
                "precision_counts": {
                    p: precisions.count(p) for p in sorted(set(precisions))
                },
            },
        )
    )
    # QAT int8 fine-tuned from the same weights.
    model.set_weights(weights)
    qat = keras_tflq.quantize_model(model)
    compile_model(qat, 1e-4)
    started = time.perf_counter()
    qat.fit(x, y, epochs=QAT_EPOCHS, batch_size=32, verbose=0)
    seconds = time.perf_counter() - started
    path = os.path.join(workdir, f"{name}_qat_int8.tflite")
    report = keras_tflq.export_tflite(
        qat, path, mode="int8", validation_data=(x_val, y_val)
    )
    rows.append(
        row(
            name,
            f"QAT int8 ({QAT_EPOCHS} epochs)",
            report,
            path,
            seconds=seconds,
        )
    )
    keras.backend.clear_session()
    for entry in rows:
        entry["keras_accuracy"] = round(keras_accuracy, 4)
    return rows


def markdown(rows):
    lines = [
        "| model | artifact | val accuracy (Keras) | size KB "
        "| LiteRT latency ms | search / fine-tune s | layer precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        precision = ""
        if "precision_counts" in r:
            precision = ", ".join(
                f"{k}: {v}" for k, v in r["precision_counts"].items()
            )
            precision += (
                f" ({r['conversions']} conversions,"
                f" budget met: {r['budget_met']})"
            )
        lines.append(
            f"| {r['model']} | {r['variant']} "
            f"| {r['accuracy']:.4f} ({r['keras_accuracy']:.4f}) "
            f"| {r['bytes'] / 1000:.1f} | {r['latency_ms']:.4f} "
            f"| {'' if r['seconds'] is None else r['seconds']} | {precision} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"subset of {list(MODELS)}"
    )
    parser.add_argument(
        "--output", default=None, help="also write the results as markdown here"
    )
    parser.add_argument(
        "--charts",
        default=None,
        help="write the per-layer error charts (int8, budget) to this folder",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_budget_") as workdir:
        for name in args.models.split(","):
            rows.extend(bench_model(name, workdir, args.charts))
    from importlib.metadata import version

    import ai_edge_quantizer  # noqa: F401

    result = {
        "benchmark": "accuracy_budget",
        "max_drop": MAX_DROP,
        "rows": rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": _report.machine_info(
            {"ai_edge_quantizer": version("ai-edge-quantizer")}
        ),
    }
    print(json.dumps(result))
    print()
    print(markdown(rows))
    if args.output:
        _report.write_results(
            args.output,
            "Accuracy budget: float32, int8, int16x8, max_drop, QAT int8",
            result,
            markdown(rows),
        )


if __name__ == "__main__":
    main()
