"""The `export`, `inspect`, `evaluate` and `micro` commands.

The commands import TensorFlow-backed modules inside their functions on
purpose: `keras-tflq --help` and argument errors then cost no TensorFlow
start-up.
"""

import json
import os

import numpy as np

from keras_tflq.cli.data_files import existing_file
from keras_tflq.cli.data_files import load_data
from keras_tflq.cli.data_files import load_keras_model


def run_export(args):
    """`keras-tflq export`: a `.keras` model to an artifact and its report."""
    from keras_tflq.conversion.export import export_tflite
    from keras_tflq.conversion.model_inputs import ModelInputs

    model = load_keras_model(args.model)
    names = ModelInputs(model).names
    calibration = None
    if args.calibration:
        x, _ = load_data(args.calibration, names, need_y=False)
        calibration = x[0] if len(x) == 1 else x
    validation = None
    if args.validation:
        x, y = load_data(args.validation, names)
        validation = (x[0] if len(x) == 1 else x, y)
    stem = os.path.splitext(args.model)[0]
    output = args.output or f"{stem}_{args.mode}.tflite"
    report = export_tflite(
        model,
        output,
        mode=args.mode,
        calibration_data=calibration,
        calibration_samples=args.calibration_samples,
        input_type=args.input_type,
        output_type=args.output_type,
        allow_float_ops=args.allow_float_ops,
        validation_data=validation,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"wrote {output} ({report['bytes']} bytes, mode={args.mode}, "
        f"all integer: {'yes' if report['all_integer'] else 'no'})"
    )
    for name, value in report["tflite_metrics"].items():
        print(f"  tflite {name}: {value:.6g}")


def run_inspect(args):
    """`keras-tflq inspect`: ops, tensor types, size, float ops left."""
    from keras_tflq.runtime.inspection import inspect_tflite

    report = inspect_tflite(args.tflite)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.tflite}: {report['bytes']} bytes")
    for kind in ("inputs", "outputs"):
        for t in report[kind]:
            print(
                f"  {kind[:-1]} {t['name']}: {t['dtype']} {t['shape']}"
                f"{_quantization_text(t['quantization'])}"
            )
    print("ops:")
    for op, count in report["op_counts"].items():
        print(f"  {op}: {count}")
    print("tensor types:")
    for dtype, count in report["tensor_dtypes"].items():
        print(f"  {dtype}: {count}")
    print(f"all integer: {'yes' if report['all_integer'] else 'no'}")
    print(f"float ops left: {len(report['float_ops'])}")
    for op in report["float_ops"]:
        print(f"  {op['op']} -> {', '.join(op['outputs'])}")


def run_evaluate(args):
    """`keras-tflq evaluate`: argmax accuracy and MSE of an artifact."""
    from keras_tflq.runtime.litert_model import LiteRTModel

    model = LiteRTModel(model_path=existing_file(args.tflite, "tflite"))
    x, y = load_data(args.data, model.input_names)
    predictions = model.predict(x, batch_size=args.batch_size)
    if isinstance(predictions, list):
        raise ValueError(
            "Expected a single-output artifact to evaluate. "
            f"Received: an artifact with outputs {model.output_names}"
        )
    metrics = _scores(predictions, y)
    _print_metrics(metrics, args.json)


def run_micro(args):
    """`keras-tflq micro`: the TFLM check, arena, agreement, C sources."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_tflq.conversion.micro_sources import write_micro_sources
    from keras_tflq.runtime.micro import analyze_micro
    from keras_tflq.runtime.tensor_io import named_io

    with open(existing_file(args.tflite, "tflite"), "rb") as handle:
        content = handle.read()
    samples = None
    if args.data:
        inputs, _ = named_io(Interpreter(model_content=content))
        x, _ = load_data(args.data, [n for n, _ in inputs], need_y=False)
        count = min(32, len(x[0]))
        samples = [[a[i : i + 1] for a in x] for i in range(count)]
    report = analyze_micro(content, samples=samples)
    if args.emit_c:
        name = os.path.splitext(os.path.basename(args.tflite))[0]
        report["sources"] = write_micro_sources(
            content, report, args.emit_c, name
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    agreement = report["litert_agreement"]
    print(f"{args.tflite}: runs on TensorFlow Lite Micro "
          f"(tflite-micro {report['tflite_micro']})")
    print(f"  arena: {report['arena_bytes']} bytes (smallest that allocates)")
    print(f"  flash: {report['flash_bytes']} bytes (model array)")
    print(f"  ops: {', '.join(report['ops'])}")
    print(f"  TFLM vs LiteRT: {agreement['agreement']} on "
          f"{agreement['samples']} {agreement['source']} samples")
    for path in report.get("sources", []):
        print(f"  wrote {path}")


def _scores(predictions, y):
    y = np.asarray(y)
    if y.shape == predictions.shape:
        target = y.astype(np.float32)
        labels = y.argmax(-1) if y.ndim > 1 and y.shape[-1] > 1 else None
    elif y.reshape(len(y), -1).shape[1] == 1 and predictions.ndim == 2:
        labels = y.reshape(-1).astype(np.int64)
        target = np.eye(predictions.shape[-1], dtype=np.float32)[labels]
    else:
        raise ValueError(
            "Expected `y` of the predictions' shape or one label per sample. "
            f"Received: y of shape {y.shape} for predictions of shape "
            f"{predictions.shape}"
        )
    metrics = {}
    if labels is not None:
        metrics["accuracy"] = float(np.mean(predictions.argmax(-1) == labels))
    metrics["mse"] = float(np.mean((predictions - target) ** 2))
    metrics["samples"] = int(len(y))
    return metrics


def _print_metrics(metrics, as_json):
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    for name, value in metrics.items():
        text = f"{value:.6g}" if isinstance(value, float) else f"{value}"
        print(f"{name}: {text}")


def _quantization_text(quantization):
    if not quantization["scale"]:
        return ""
    if len(quantization["scale"]) == 1:
        return (
            f" (scale {quantization['scale'][0]:.6g}, "
            f"zero point {quantization['zero_point'][0]})"
        )
    return f" (per-channel, {len(quantization['scale'])} scales)"
