"""The `compare` command: a Keras model against its artifact, layer by layer.
"""

import json
import os
import re

import numpy as np

from keras_tflq.cli.data_files import as_list
from keras_tflq.cli.data_files import existing_file
from keras_tflq.cli.data_files import load_data
from keras_tflq.cli.data_files import load_keras_model


def run_compare(args):
    """`keras-tflq compare`: model vs artifact, outputs and layers."""
    from keras_tflq.runtime.litert_model import LiteRTModel

    if args.layer_samples < 1:
        raise ValueError(
            "Expected `--layer-samples` to be a positive integer. "
            f"Received: layer_samples={args.layer_samples}"
        )
    model = load_keras_model(args.model)
    litert_model = LiteRTModel(
        model_path=existing_file(args.tflite, "tflite"),
        preserve_all_tensors=True,
    )
    x, _ = load_data(args.data, litert_model.input_names, need_y=False)
    keras_x = x if len(model.inputs) > 1 else x[0]
    expected = as_list(
        model.predict(keras_x, batch_size=args.batch_size, verbose=0)
    )
    actual = as_list(litert_model.predict(x, batch_size=args.batch_size))
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
    expected = as_list(probe.predict(x if len(x) > 1 else x[0], verbose=0))
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
