"""Benchmark (issue 3): QAT step-time overhead on MobileNetV2, keras_tflq vs
tfmot.

`keras.applications.MobileNetV2(weights=None)` at 32x32x3, 10 classes, on
random data (the step time does not depend on the values), batch 32, Adam.
Within each framework a float model and `quantize_model` of the same
architecture are compiled and warmed up (one epoch each), then timed in
alternating one-epoch fits (float, QAT, QAT, float, ...): per round the QAT
median step time over the float one, and the median over rounds. tfmot runs
in a subprocess with `TF_USE_LEGACY_KERAS=1`.

Prints one JSON line, then a markdown table. Target: keras_tflq's overhead
<= tfmot's.

Usage:
    python bench/qat_overhead_mobilenetv2.py             # 6 rounds of 12 steps
    python bench/qat_overhead_mobilenetv2.py --quick     # 2 rounds
"""

import argparse
import json
import os
import time

import _qat_timing  # bench/ is on sys.path when a script runs
import _report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BATCH_SIZE = 32
STEPS_PER_EPOCH = 12
INPUT_SHAPE = (32, 32, 3)


def measure(framework, rounds):
    """`interleaved_step_times` of float and QAT MobileNetV2 in one
    framework."""
    if framework == "tfmot":
        import tensorflow_model_optimization as tfmot
        import tf_keras as K

        quantize_model = tfmot.quantization.keras.quantize_model
    else:
        import keras as K

        import keras_tflq

        quantize_model = keras_tflq.quantize_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (BATCH_SIZE * STEPS_PER_EPOCH, *INPUT_SHAPE))
    x = x.astype("float32")
    y = rng.integers(0, 10, len(x))

    def mobilenet():
        return K.applications.MobileNetV2(
            input_shape=INPUT_SHAPE, weights=None, classes=10
        )

    K.utils.set_random_seed(0)
    float_model, qat_model = mobilenet(), quantize_model(mobilenet())
    for model in (float_model, qat_model):
        model.compile(
            K.optimizers.Adam(1e-3), "sparse_categorical_crossentropy"
        )
        model.fit(
            x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0
        )  # traces the step
    result = _qat_timing.interleaved_step_times(
        K, float_model, qat_model, x, y, rounds, BATCH_SIZE
    )
    if framework == "tfmot":
        result["versions"] = {
            "tf_keras": K.__version__,
            "tfmot": getattr(tfmot, "__version__", "?"),
        }
    return result


def markdown(result):
    rows = [
        "| framework | float step ms | QAT step ms | QAT / float (median of "
        "rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("keras_tflq", "tfmot"):
        r = result[name]
        rows.append(
            f"| {name} | {r['timed_float_step_ms']:.1f} | "
            f"{r['timed_qat_step_ms']:.1f} | {r['timed_overhead']:.2f} |"
        )
    rows += [
        "",
        "| target | result |",
        "|---|---|",
        f"| keras_tflq QAT step overhead <= tfmot's | {result['meets_target']} "
        "|",
    ]
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timing rounds")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timing rounds (default 6)"
    )
    parser.add_argument("--tfmot-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--output",
        default=None,
        help="also write the results as markdown to this file",
    )
    args = parser.parse_args(argv)
    if args.tfmot_worker:
        print(
            "TFMOT_RESULT "
            + json.dumps(measure("tfmot", int(args.tfmot_worker)))
        )
        return
    rounds = args.rounds or (2 if args.quick else 6)
    started = time.perf_counter()
    result = {
        "benchmark": "qat_overhead_mobilenetv2",
        "protocol": {
            "input_shape": INPUT_SHAPE, "batch_size": BATCH_SIZE,
            "steps_per_epoch": STEPS_PER_EPOCH, "rounds": rounds,
        },
        "keras_tflq": measure("keras_tflq", rounds),
        "tfmot": _qat_timing.run_tfmot_worker(__file__, str(rounds)),
    }
    result["meets_target"] = (
        result["keras_tflq"]["timed_overhead"]
        <= result["tfmot"]["timed_overhead"]
    )
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = _report.machine_info(result["tfmot"].pop("versions"))
    print(json.dumps(result))
    print()
    print(markdown(result))
    if args.output:
        _report.write_results(
            args.output,
            "QAT step-time overhead on MobileNetV2, keras_tflq vs tfmot (issue "
            "3)",
            result,
            markdown(result),
        )


if __name__ == "__main__":
    main()
