"""Where the bytes of a full-int8 MobileNetV2-224 artifact go, against the
float32 artifact (the `int8 size / float32 <= 0.27` target of
`bench/run.py`).

Exports MobileNetV2 (alpha 1.0, 224x224, `weights=None`) to float32 and to
PTQ int8 with `keras_tflq.export_tflite` (as `bench/run.py` does), or reads
the `.tflite` files given on the command line (the first one is the
float32 reference), and counts:

* the byte categories of `keras_tflq.runtime.inspection.byte_breakdown`,
  with the quantization parameters split into float32 scales and int64
  zero points;
* per op type (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED): ops, output
  channels, kernel bytes and the per-channel quantization bytes of the
  kernels and biases;
* the floor of a standard per-channel int8 file: kernels + biases + the
  quantization parameters, one float32 scale and one int64 zero point per
  channel of a per-channel tensor (the TFLite interpreter rejects a tensor
  whose zero-point count differs from its scale count, and the int8 spec
  gives biases per-axis scales), with no names, metadata or structure at
  all; and how many bytes the 0.27 target leaves beside the kernels and
  biases.

Prints one JSON line, then a markdown table.

Usage:
    python bench/int8_size_accounting.py
    python bench/int8_size_accounting.py float32.tflite int8.tflite ...
"""

import argparse
import collections
import os
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET = 0.27
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def export_artifacts(workdir):
    """Float32 and PTQ int8 MobileNetV2-224 files, as `bench/run.py`
    exports them."""
    import run

    model, shape = run.build_float_model("mobilenetv2_224")
    calibration = run._inputs(shape, 8)
    paths = {}
    for mode in ("float32", "int8"):
        paths[mode] = os.path.join(workdir, f"mobilenetv2_224_{mode}.tflite")
        run._export(model, paths[mode], mode, calibration)
    return paths


def account(path):
    """Byte categories, quantization parameters and per-op-type counts of
    one artifact."""
    from ai_edge_litert import schema_py_generated as schema

    from keras_tflq.runtime.inspection import byte_breakdown

    with open(path, "rb") as f:
        content = f.read()
    model = schema.Model.GetRootAs(content, 0)
    names = {
        v: k for k, v in vars(schema.BuiltinOperator).items()
        if not k.startswith("_")
    }
    codes = [
        names.get(
            max(
                model.OperatorCodes(i).BuiltinCode(),
                model.OperatorCodes(i).DeprecatedBuiltinCode(),
            )
        )
        for i in range(model.OperatorCodesLength())
    ]
    scales = zero_points = 0
    per_op = collections.defaultdict(collections.Counter)
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            quantization = graph.Tensors(t).Quantization()
            if quantization is not None:
                scales += 4 * quantization.ScaleLength()
                zero_points += 8 * quantization.ZeroPointLength()
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            code = codes[op.OpcodeIndex()]
            if code not in _WEIGHT_OPS or op.InputsLength() < 2:
                continue
            row = per_op[code]
            row["ops"] += 1
            kernel = graph.Tensors(op.Inputs(1))
            row["kernel_bytes"] += model.Buffers(kernel.Buffer()).DataLength()
            row["output_channels"] += graph.Tensors(op.Outputs(0)).Shape(
                graph.Tensors(op.Outputs(0)).ShapeLength() - 1
            )
            tensors = [kernel]
            if op.InputsLength() > 2 and op.Inputs(2) >= 0:
                tensors.append(graph.Tensors(op.Inputs(2)))
            for tensor in tensors:
                quantization = tensor.Quantization()
                if quantization is not None:
                    row["quantization_bytes"] += (
                        4 * quantization.ScaleLength()
                        + 8 * quantization.ZeroPointLength()
                    )
    breakdown = byte_breakdown(content)
    breakdown.pop("constants_by_dtype")
    return {
        "bytes": len(content),
        "breakdown": breakdown,
        "scale_bytes": scales,
        "zero_point_bytes": zero_points,
        "per_op": {k: dict(v) for k, v in sorted(per_op.items())},
    }


def summarize(paths):
    """The accounting of every artifact against the first (float32)."""
    artifacts = {name: account(path) for name, path in paths.items()}
    reference = next(iter(artifacts.values()))["bytes"]
    limit = int(TARGET * reference)
    for row in artifacts.values():
        counts = row["breakdown"]
        quantization = row["scale_bytes"] + row["zero_point_bytes"]
        # A standard per-channel int8 file cannot drop any of these.
        floor = counts["weights"] + counts["biases"] + quantization
        row["ratio"] = round(row["bytes"] / reference, 4)
        row["floor_bytes"] = floor
        row["floor_ratio"] = round(floor / reference, 4)
        row["over_target_bytes"] = row["bytes"] - limit
        row["left_for_non_weights_bytes"] = (
            limit - counts["weights"] - counts["biases"]
        )
    return {
        "benchmark": "int8_size_accounting",
        "target": TARGET,
        "target_bytes": limit,
        "artifacts": artifacts,
    }


def markdown(result):
    lines = [
        f"Target: int8 bytes <= {result['target']} x float32 = "
        f"{result['target_bytes']:,} bytes.",
        "",
        "| artifact | bytes | / float32 | kernels | biases | scales (f32) "
        "| zero points (i64) | names, metadata, signatures | structure "
        "| floor | floor / float32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["artifacts"].items():
        counts = row["breakdown"]
        strings = (
            counts["tensor_names"] + counts["metadata"] + counts["signatures"]
        )
        lines.append(
            f"| {name} | {row['bytes']:,} | {row['ratio']:.4f} | "
            f"{counts['weights']:,} | {counts['biases']:,} | "
            f"{row['scale_bytes']:,} | {row['zero_point_bytes']:,} | "
            f"{strings:,} | "
            f"{counts['structure'] + counts['other_constants']:,} | "
            + (
                f"{row['floor_bytes']:,} | {row['floor_ratio']:.4f} |"
                if row["scale_bytes"]
                else "- | - |"
            )
        )
    lines += [
        "",
        "| artifact | op | ops | output channels | kernel bytes | "
        "kernel + bias quantization bytes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in result["artifacts"].items():
        for op, counts in row["per_op"].items():
            lines.append(
                f"| {name} | {op} | {counts['ops']} | "
                f"{counts['output_channels']:,} | "
                f"{counts['kernel_bytes']:,} | "
                f"{counts.get('quantization_bytes', 0):,} |"
            )
    lines.append("")
    for name, row in list(result["artifacts"].items())[1:]:
        lines.append(
            f"- {name}: {row['over_target_bytes']:,} bytes over the target; "
            f"the target leaves {row['left_for_non_weights_bytes']:,} bytes "
            "beside the kernels and biases, the per-channel scales and "
            f"zero points alone take "
            f"{row['scale_bytes'] + row['zero_point_bytes']:,}."
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths",
        nargs="*",
        help="the float32 artifact, then the artifacts to account for",
    )
    parser.add_argument(
        "--output", default=None, help="also write a markdown results file"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="int8_size_") as workdir:
        if args.paths:
            paths = {os.path.basename(p): p for p in args.paths}
        else:
            paths = export_artifacts(workdir)
        result = summarize(paths)
    import _report

    result["machine"] = _report.machine_info()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    _report.publish(
        result,
        markdown(result),
        args.output,
        "int8 MobileNetV2-224 size accounting (bench/int8_size_accounting.py)",
    )


if __name__ == "__main__":
    main()
