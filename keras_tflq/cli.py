"""The `keras-tflq` command line: export, inspect, evaluate, compare artifacts.

`--help` answers without importing TensorFlow: each command imports what it
needs when it runs. Unless the caller set `TF_CPP_MIN_LOG_LEVEL`, the CLI
sets it to `2` and keeps TensorFlow's C++ start-up lines off stderr (TF 2.21
writes some of them whatever the level).

Example:

```
keras-tflq export model.keras --mode int8 --calibration val.npz
keras-tflq inspect model_int8.tflite
keras-tflq evaluate model_int8.tflite --data val.npz
keras-tflq compare model.keras model_int8.tflite --data val.npz
keras-tflq micro model_int8.tflite --emit-c firmware/
```
"""

import argparse
import json
import os
import re
import sys

import numpy as np

from keras_tflq.conversion.errors import ConversionError


def main(argv=None):
    """Runs the `keras-tflq` command line.

    Args:
        argv: The arguments without the program name, or `None` for
            `sys.argv[1:]`. Defaults to `None`.

    Returns:
        The exit status: `0` on success, `1` when the input is rejected
        (the reason is printed to stderr).

    Example:

    ```python
    from keras_tflq.cli import main

    main(["inspect", "model_int8.tflite", "--json"])
    ```
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        _import_tensorflow_quietly()
    try:
        args.run(args)
    except (ValueError, ConversionError, ImportError) as e:
        print(f"keras-tflq {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow's C++ start-up lines (oneDNN, CUDA drivers, absl's
    "InitializeLog" warning) go straight to fd 2 during the import, before
    `TF_CPP_MIN_LOG_LEVEL` is read; Python's own errors are unaffected.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-tflq",
        description=(
            "Export, inspect, evaluate and compare TFLite (LiteRT) artifacts."
        ),
    )
    commands = parser.add_subparsers(dest="command")

    export = commands.add_parser(
        "export",
        help="a saved .keras model to a .tflite artifact and its JSON report",
    )
    export.add_argument("model", help="the .keras model")
    export.add_argument(
        "--mode",
        default="int8",
        help="float32, float16, dynamic, int8 or int16x8 (default int8)",
    )
    export.add_argument(
        "-o",
        "--output",
        help="the .tflite path (default <model>_<mode>.tflite)",
    )
    export.add_argument(
        "--calibration",
        help=(
            "an .npz with `x` (or `x_<input name>`), or an .npy of the "
            "inputs of a single-input model, to calibrate on"
        ),
    )
    export.add_argument("--calibration-samples", type=int, default=200)
    export.add_argument(
        "--validation", help="an .npz with `x` and `y` to score the artifact on"
    )
    export.add_argument("--input-type", help="int8, uint8, int16 or float32")
    export.add_argument("--output-type", help="int8, uint8, int16 or float32")
    export.add_argument(
        "--allow-float-ops",
        action="store_true",
        help="let ops with no integer kernel run in float",
    )
    export.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    export.set_defaults(run=_export)

    inspect = commands.add_parser(
        "inspect", help="ops, tensor types, size and float ops left"
    )
    inspect.add_argument("tflite", help="the .tflite file")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(run=_inspect)

    evaluate = commands.add_parser(
        "evaluate", help="argmax accuracy and MSE of an artifact on data"
    )
    evaluate.add_argument("tflite", help="the .tflite file")
    _add_data_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)

    compare = commands.add_parser(
        "compare",
        help="a Keras model against its artifact, layer by layer; writes "
        "<artifact>_layers.json (and .png with the plot extra) beside it",
    )
    compare.add_argument("model", help="the .keras model")
    compare.add_argument("tflite", help="the .tflite file")
    _add_data_arguments(compare)
    compare.add_argument(
        "--layer-samples",
        type=int,
        default=32,
        help="samples for the layer-by-layer comparison (default 32)",
    )
    compare.set_defaults(run=_compare)

    micro = commands.add_parser(
        "micro",
        help="TFLite Micro: op check, arena size, TFLM vs LiteRT, C sources",
    )
    micro.add_argument("tflite", help="the .tflite file")
    micro.add_argument("--data", help="an .npz with `x` (or `x_<input>`)")
    micro.add_argument("--emit-c", metavar="DIR", help="write <name>.h/.cc")
    micro.add_argument("--json", action="store_true", help="print JSON")
    micro.set_defaults(run=_micro)
    return parser


def _add_data_arguments(parser):
    parser.add_argument(
        "--data",
        required=True,
        help=(
            "an .npz file with `x` (or `x_<input name>` per input) and `y` "
            "(compare also takes an .npy of a single input)"
        ),
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON")


# The commands import TensorFlow-backed modules inside their functions on
# purpose: `keras-tflq --help` and argument errors then cost no TensorFlow
# start-up.


def _export(args):
    from keras_tflq.conversion.export import export_tflite
    from keras_tflq.conversion.model_inputs import ModelInputs

    model = _load_keras_model(args.model)
    names = ModelInputs(model).names
    calibration = None
    if args.calibration:
        x, _ = _load_data(args.calibration, names, need_y=False)
        calibration = x[0] if len(x) == 1 else x
    validation = None
    if args.validation:
        x, y = _load_data(args.validation, names)
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


def _inspect(args):
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


def _evaluate(args):
    from keras_tflq.runtime.litert_model import LiteRTModel

    model = LiteRTModel(model_path=_existing(args.tflite, "tflite"))
    x, y = _load_data(args.data, model.input_names)
    predictions = model.predict(x, batch_size=args.batch_size)
    if isinstance(predictions, list):
        raise ValueError(
            "Expected a single-output artifact to evaluate. "
            f"Received: an artifact with outputs {model.output_names}"
        )
    metrics = _scores(predictions, y)
    _print_metrics(metrics, args.json)


def _compare(args):
    from keras_tflq.runtime.litert_model import LiteRTModel

    if args.layer_samples < 1:
        raise ValueError(
            "Expected `--layer-samples` to be a positive integer. "
            f"Received: layer_samples={args.layer_samples}"
        )
    model = _load_keras_model(args.model)
    litert_model = LiteRTModel(
        model_path=_existing(args.tflite, "tflite"), preserve_all_tensors=True
    )
    x, _ = _load_data(args.data, litert_model.input_names, need_y=False)
    keras_x = x if len(model.inputs) > 1 else x[0]
    expected = _as_list(
        model.predict(keras_x, batch_size=args.batch_size, verbose=0)
    )
    actual = _as_list(litert_model.predict(x, batch_size=args.batch_size))
    outputs = []
    for name, want, got in zip(
        litert_model.output_names, expected, actual, strict=False
    ):
        entry = {
            "output": name,
            "max_abs_diff": float(np.abs(got - want).max()),
        }
        if want.ndim > 1 and want.shape[-1] > 1:
            entry["argmax_agreement"] = float(
                np.mean(got.argmax(-1) == want.argmax(-1))
            )
        outputs.append(entry)
    layers = _compare_layers(
        model, litert_model, [a[: args.layer_samples] for a in x]
    )
    report = {"outputs": outputs, "layers": layers}
    report["layer_report"] = _write_layer_report(
        model, args.tflite, litert_model.input_names, x, args.layer_samples
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for entry in outputs:
        line = f"{entry['output']}: max abs diff {entry['max_abs_diff']:.6g}"
        if "argmax_agreement" in entry:
            line += f", argmax agreement {entry['argmax_agreement']:.4f}"
        print(line)
    written = report["layer_report"]
    print(
        f"per-layer error: {written['json']}"
        + (f", chart {written['png']}" if written["png"] else "")
    )
    print("layer by layer (max abs diff, relative to the layer's max):")
    for entry in layers:
        if entry["tensor"] is None:
            print(f"  {entry['layer']}: no matching TFLite tensor")
        else:
            print(
                f"  {entry['layer']}: {entry['max_abs_diff']:.6g} "
                f"({entry['relative_diff']:.3%}) {entry['dtype']} "
                f"{entry['tensor']}"
            )


def _micro(args):
    from ai_edge_litert.interpreter import Interpreter

    from keras_tflq.conversion.micro_sources import write_micro_sources
    from keras_tflq.runtime.litert_model import named_io
    from keras_tflq.runtime.micro import analyze_micro

    with open(_existing(args.tflite, "tflite"), "rb") as handle:
        content = handle.read()
    samples = None
    if args.data:
        inputs, _ = named_io(Interpreter(model_content=content))
        x, _ = _load_data(args.data, [n for n, _ in inputs], need_y=False)
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


def _write_layer_report(model, tflite_path, input_names, x, samples):
    """The per-layer error JSON (and PNG) beside the artifact."""
    from keras_tflq.conversion.layer_report import layer_report_path
    from keras_tflq.conversion.layer_report import write_layer_report
    from keras_tflq.runtime.layer_error import layer_errors

    with open(tflite_path, "rb") as handle:
        content = handle.read()
    named = {n: a[:samples] for n, a in zip(input_names, x, strict=True)}
    json_path, png_path = write_layer_report(
        layer_report_path(tflite_path),
        layer_errors(model, content, named),
        title=f"{model.name}: per-layer error of "
        f"{os.path.basename(tflite_path)}",
    )
    return {"json": json_path, "png": png_path}


def _compare_layers(model, litert_model, x):
    """Compares each layer's output with the TFLite tensor named after it."""
    import keras

    layers = [
        layer
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
        and not isinstance(layer.output, (list, tuple, dict))
    ]
    if not layers:
        return []
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    expected = _as_list(probe.predict(x if len(x) > 1 else x[0], verbose=0))
    litert_model.predict_on_batch(x)
    tensors = [
        d
        for d in litert_model.tensor_details
        if np.dtype(d["dtype"]).kind in "fiu" and len(d["shape"]) > 0
    ]
    # A model output is the artifact's output tensor, whatever its name.
    output_tensors = {
        id(tensor): details["index"]
        for tensor, details in zip(
            keras.tree.flatten(model.outputs),
            litert_model.output_details,
            strict=False,
        )
    }
    by_index = {d["index"]: d for d in litert_model.tensor_details}
    results = []
    for layer, want in zip(layers, expected, strict=False):
        pattern = re.compile(rf"(^|/){re.escape(layer.name)}(_\d+)?/")
        matches = [
            d
            for d in tensors
            if tuple(d["shape"]) == want.shape
            and any(pattern.search(part) for part in d["name"].split(";"))
        ]
        if id(layer.output) in output_tensors:
            matches = [by_index[output_tensors[id(layer.output)]]]
        entry = {"layer": layer.name, "tensor": None}
        if matches:
            # The last tensor of the layer is its output (after fused ops).
            details = max(matches, key=lambda d: d["index"])
            got = litert_model.get_tensor(details["index"])
            diff = float(np.abs(got - want).max())
            scale = float(np.abs(want).max()) or 1.0
            entry.update(
                tensor=details["name"],
                dtype=np.dtype(details["dtype"]).name,
                max_abs_diff=diff,
                relative_diff=diff / scale,
            )
        results.append(entry)
    return results


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


def _load_data(path, input_names, need_y=True):
    """Returns `([x per input], y)` from an .npz or .npy file."""
    from keras_tflq.cli_data import load_data_file

    return load_data_file(_existing(path, "data"), input_names, need_y=need_y)


def _load_keras_model(path):
    """Loads a `.keras` model; a QAT model's layers are registered first."""
    import keras

    import keras_tflq.quantization  # noqa: F401  (registers the QAT layers)

    return keras.saving.load_model(_existing(path, "model"))


def _existing(path, argument):
    if not os.path.isfile(path):
        raise ValueError(
            f"Expected an existing file for `{argument}`. "
            f"Received: {argument}={path}"
        )
    return path


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _quantization_text(quantization):
    if not quantization["scale"]:
        return ""
    if len(quantization["scale"]) == 1:
        return (
            f" (scale {quantization['scale'][0]:.6g}, "
            f"zero point {quantization['zero_point'][0]})"
        )
    return f" (per-channel, {len(quantization['scale'])} scales)"


if __name__ == "__main__":
    sys.exit(main())
