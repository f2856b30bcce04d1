"""Accuracy budget: float32, int8, int16x8, max_drop and QAT int8 side by side.

Models (bench/_models.py), all on sklearn digits (1,400 to train, 397 to
validate, calibrate and score on):

* outlier_mlp, outlier_cnn: an MLP and a CNN with an outlier unit (one
  unit of a hidden layer x500 and its weights in the next layer /500: the
  same function, the shape of outlier channels in real models), the case
  where full int8 breaks;
* digits_cnn: the same CNN without the outlier;
* lstm: LSTM(32) over the digits as 8 rows of 8 pixels;
* embedding: Embedding(17, 8) over the 64 pixel intensities as tokens;
* vit: a small vision transformer (MultiHeadAttention, LayerNormalization,
  Dense(gelu)) over the digits as 4 patches of 4x4.

For each, from the same weights: the float32, full int8 and int16x8
exports, the `max_drop={"accuracy": 0.02}` export, and QAT int8
(`keras_tflq.quantize_model`, recurrent and Embedding layers with their
QAT configs, fine-tuned 5 epochs at Adam 1e-4 from the same weights, then
exported). Validation accuracy of each artifact (LiteRT), size,
single-sample LiteRT latency (default delegates, XNNPACK, 1 thread, median
of timed invokes) and the time the search or the fine-tuning took. Then
the QAT variants of the outlier MLP that show why its QAT int8 collapses
(`--no-variants` skips them). Prints JSON and markdown tables.

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

import _models  # noqa: E402
import _report  # noqa: E402
import numpy as np  # noqa: E402

MAX_DROP = {"accuracy": 0.02}
QAT_EPOCHS = 5
QAT_LEARNING_RATE = 1e-4
LATENCY_RUNS = 2000


def digits(view):
    """The digits shuffled once (seed 0): 1,400 to train on, 397 to
    validate, calibrate and score on. `view`: "flat" (64 pixels in
    [0, 1]), "image" (8x8x1), "sequence" (8 rows of 8), "patches" (4
    patches of 4x4) or "tokens" (the 64 pixel intensities, integers
    0-16)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    if view == "tokens":
        x = data.data.astype("int32")
    else:
        x = (data.images / 16.0).astype("float32")
        x = {
            "flat": x.reshape(len(x), -1),
            "image": x[..., None],
            "sequence": x,
            "patches": _models.digits_patches(x),
        }[view]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], data.target[order].astype("int32")
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


class Spec:
    """One benchmarked model: how to build it, its data view, training
    epochs, the layer pair to give an outlier unit (or `None`), and
    whether it outputs logits (the sequence models) or probabilities."""

    def __init__(self, build, view, epochs, outlier=None, logits=False):
        self.build = build
        self.view = view
        self.epochs = epochs
        self.outlier = outlier
        self.logits = logits


def _sequence(kind):
    def build():
        return _models.sequence_model(kind)

    return build


MODELS = {
    "outlier_mlp": Spec(
        lambda: _models.digits_mlp("outlier_mlp"),
        "flat",
        12,
        outlier=("outlier", "dense_mid"),
    ),
    "outlier_cnn": Spec(
        lambda: _models.digits_cnn("outlier_cnn"),
        "image",
        6,
        outlier=("conv_a", "conv_b"),
    ),
    "digits_cnn": Spec(
        lambda: _models.digits_cnn(), "image", 6
    ),
    "lstm": Spec(_sequence("lstm"), "sequence", 15, logits=True),
    "embedding": Spec(_sequence("embedding"), "tokens", 15, logits=True),
    "vit": Spec(_sequence("vit"), "patches", 15, logits=True),
}


def compile_model(model, learning_rate, logits=False):
    """Adam at `learning_rate`, or SGD(0) (weights kept) when it is 0."""
    import keras

    model.compile(
        keras.optimizers.Adam(learning_rate)
        if learning_rate
        else keras.optimizers.SGD(0.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=logits),
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


def not_converted(model_name, variant, error):
    """The row of an export the converter rejected, with its reason."""
    return {
        "model": model_name,
        "variant": variant,
        "accuracy": None,
        "bytes": None,
        "latency_ms": None,
        "seconds": None,
        "error": _reason(error),
    }


def _reason(error):
    """The converter's own words in a `ConversionError`, shortened."""
    text = str(error)
    if "error: " in text:
        text = text.split("error: ", 1)[1]
    elif ": " in text:
        text = text.split("): ", 1)[-1].split(": ", 1)[-1]
    return text.splitlines()[0][:110]


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

    spec = MODELS[name]
    model = spec.build()
    (x, y), (x_val, y_val) = digits(spec.view)
    if not spec.logits:
        compile_model(model, 1e-3)
    model.fit(x, y, epochs=spec.epochs, batch_size=32, verbose=0)
    if spec.outlier:
        _models.add_outlier(
            model.get_layer(spec.outlier[0]), model.get_layer(spec.outlier[1])
        )
    compile_model(model, 0.0, spec.logits)
    keras_accuracy = model.evaluate(x_val, y_val, verbose=0, return_dict=True)[
        "accuracy"
    ]
    weights = model.get_weights()
    rows = []
    for mode in ("float32", "int8", "int16x8"):
        path = os.path.join(workdir, f"{name}_{mode}.tflite")
        try:
            report = keras_tflq.export_tflite(
                model,
                path,
                mode=mode,
                calibration_data=x_val,
                validation_data=(x_val, y_val),
            )
        except keras_tflq.ConversionError as error:
            rows.append(not_converted(name, mode, error))
            continue
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
    # QAT int8 fine-tuned from the same weights; layers without a QAT
    # config (none here but the LSTM's recurrent step) are calibrated.
    float_model = spec.build()
    float_model.set_weights(weights)
    qat = keras_tflq.quantize_model(float_model, unsupported="float")
    compile_model(qat, QAT_LEARNING_RATE, spec.logits)
    started = time.perf_counter()
    qat.fit(x, y, epochs=QAT_EPOCHS, batch_size=32, verbose=0)
    seconds = time.perf_counter() - started
    path = os.path.join(workdir, f"{name}_qat_int8.tflite")
    report = keras_tflq.export_tflite(
        qat,
        path,
        mode="int8",
        calibration_data=x_val,
        validation_data=(x_val, y_val),
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


def qat_outlier_variants(workdir):
    """Why QAT int8 of the outlier MLP collapses: QAT variants of its
    quantization, each fine-tuned as the QAT int8 row from the same
    weights, scored in Keras (the QAT model) and, where the converter
    takes it, as an artifact.

    The default scheme (tfmot's) gives a Dense kernel one range
    (per-tensor) and each output one min/max range: the x500 unit sets
    both for the `outlier` layer. The variants change one at a time.
    """
    import keras

    import keras_tflq
    from keras_tflq.quantization.default_scheme.default_quantize_config import (  # noqa: E501
        DefaultQuantizeConfig,
    )

    spec = MODELS["outlier_mlp"]
    (x, y), (x_val, y_val) = digits(spec.view)
    model = spec.build()
    compile_model(model, 1e-3)
    model.fit(x, y, epochs=spec.epochs, batch_size=32, verbose=0)
    _models.add_outlier(
        model.get_layer(spec.outlier[0]), model.get_layer(spec.outlier[1])
    )
    weights = model.get_weights()

    def annotated(per_channel, sixteen_bit):
        def clone(layer):
            layer = layer.__class__.from_config(layer.get_config())
            if not isinstance(layer, keras.layers.Dense):
                return keras_tflq.quantize_annotate_layer(layer)
            config = DefaultQuantizeConfig(
                ["kernel"],
                [-1 if per_channel else None],
                activation_bits=16 if layer.name in sixteen_bit else 8,
            )
            return keras_tflq.quantize_annotate_layer(layer, config)

        clone_model = keras.models.clone_model(model, clone_function=clone)
        clone_model.set_weights(weights)
        return keras_tflq.quantize_apply(clone_model)

    variants = [
        ("default scheme, not fine-tuned (ranges at their initial +-6)",
         lambda: keras_tflq.quantize_model(model), 0, "int8"),
        ("default scheme (per-tensor Dense kernels)",
         lambda: keras_tflq.quantize_model(model), QAT_EPOCHS, "int8"),
        ("default scheme, Adam 1e-2",
         lambda: keras_tflq.quantize_model(model), QAT_EPOCHS, "int8"),
        ("per-channel Dense kernels",
         lambda: annotated(True, ()), QAT_EPOCHS, "int8"),
        ("16-bit activations after `outlier`",
         lambda: annotated(False, ("outlier",)), QAT_EPOCHS, "int8"),
        ("16-bit activations everywhere (int16x8)",
         lambda: keras_tflq.quantize_model(model, activation_bits=16),
         QAT_EPOCHS, "int16x8"),
        ("per-channel Dense kernels + 16-bit activations after `outlier`",
         lambda: annotated(True, ("outlier",)), QAT_EPOCHS, "int8"),
    ]
    rows = []
    for label, make, epochs, mode in variants:
        qat = make()
        rate = 1e-2 if "1e-2" in label else QAT_LEARNING_RATE
        compile_model(qat, rate)
        losses = []
        if epochs:
            history = qat.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
            losses = [round(v, 3) for v in history.history["loss"]]
        keras_accuracy = qat.evaluate(x_val, y_val, verbose=0)[1]
        path = os.path.join(workdir, "outlier_mlp_variant.tflite")
        try:
            report = keras_tflq.export_tflite(
                qat, path, mode=mode, validation_data=(x_val, y_val)
            )
            artifact = round(report["tflite_metrics"]["accuracy"], 4)
        except keras_tflq.ConversionError as error:
            artifact = "not converted: " + _reason(error)
        rows.append(
            {
                "variant": label,
                "mode": mode,
                "epochs": epochs,
                "train_loss": losses,
                "keras_qat_accuracy": round(keras_accuracy, 4),
                "artifact_accuracy": artifact,
            }
        )
        keras.backend.clear_session()
    rows.append(_tfmot_variant(weights, (x, y), (x_val, y_val), workdir))
    return rows


def _tfmot_variant(weights, data, validation, workdir):
    """tfmot's `quantize_model` on a `tf_keras` copy of the outlier MLP,
    fine-tuned as the QAT int8 row: the reference scheme."""
    from importlib.metadata import version

    import tensorflow_model_optimization as tfmot
    import tf_keras

    import keras_tflq

    (x, y), (x_val, y_val) = data, validation
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [tf_keras.Input((64,))]
        + [
            tf_keras.layers.Dense(units, activation=activation)
            for units, activation in [
                (32, "relu"),
                (32, "relu"),
                (32, "relu"),
                (10, "softmax"),
            ]
        ]
    )
    model.set_weights(weights)
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(
        tf_keras.optimizers.Adam(QAT_LEARNING_RATE),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = qat.fit(x, y, epochs=QAT_EPOCHS, batch_size=32, verbose=0)
    path = os.path.join(workdir, "outlier_mlp_tfmot.tflite")
    report = keras_tflq.export_tflite(
        qat, path, mode="int8", validation_data=(x_val, y_val)
    )
    return {
        "variant": "tfmot "
        + version("tensorflow-model-optimization")
        + " quantize_model (a tf_keras copy)",
        "mode": "int8",
        "epochs": QAT_EPOCHS,
        "train_loss": [round(v, 3) for v in history.history["loss"]],
        "keras_qat_accuracy": round(
            qat.evaluate(x_val, y_val, verbose=0)[1], 4
        ),
        "artifact_accuracy": round(report["tflite_metrics"]["accuracy"], 4),
    }


def variants_markdown(rows):
    lines = [
        "| QAT of outlier_mlp | export mode | train loss per epoch "
        "| Keras QAT val accuracy | artifact val accuracy |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        losses = ", ".join(str(v) for v in r["train_loss"]) or "-"
        artifact = r["artifact_accuracy"]
        if not isinstance(artifact, str):
            artifact = f"{artifact:.4f}"
        lines.append(
            f"| {r['variant']} | {r['mode']} | {losses} "
            f"| {r['keras_qat_accuracy']:.4f} | {artifact} |"
        )
    return "\n".join(lines)


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
        if r["accuracy"] is None:
            lines.append(
                f"| {r['model']} | {r['variant']} | not converted "
                f"({r['keras_accuracy']:.4f}) | | | | {r['error']} |"
            )
            continue
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
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the QAT variants of the outlier MLP",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows, variants = [], []
    with tempfile.TemporaryDirectory(prefix="bench_budget_") as workdir:
        for name in args.models.split(","):
            rows.extend(bench_model(name, workdir, args.charts))
            print(json.dumps(rows[-1]), flush=True)
        if not args.no_variants:
            variants = qat_outlier_variants(workdir)
    from importlib.metadata import version

    import ai_edge_quantizer  # noqa: F401

    result = {
        "benchmark": "accuracy_budget",
        "max_drop": MAX_DROP,
        "rows": rows,
        "qat_outlier_variants": variants,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": _report.machine_info(
            {"ai_edge_quantizer": version("ai-edge-quantizer")}
        ),
    }
    table = markdown(rows)
    if variants:
        table += "\n\n" + variants_markdown(variants)
    print(json.dumps(result))
    print()
    print(table)
    if args.output:
        _report.write_results(
            args.output,
            "Accuracy budget: float32, int8, int16x8, max_drop, QAT int8",
            result,
            table,
        )


if __name__ == "__main__":
    main()
