"""Benchmark (issue 3): QAT step-time overhead on MobileNetV2, keras_tflq vs tfmot.

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
import statistics
import subprocess
import sys
import time

import _report  # bench/ is on sys.path when a script runs

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BATCH_SIZE = 32
STEPS_PER_EPOCH = 12
INPUT_SHAPE = (32, 32, 3)


def measure(framework, rounds):
    """{float_step_ms, qat_step_ms, overhead} for one framework."""
    if framework == "tfmot":
        import tf_keras as K

        import tensorflow_model_optimization as tfmot

        quantize_model = tfmot.quantization.keras.quantize_model
    else:
        import keras as K

        import keras_tflq

        quantize_model = keras_tflq.quantize_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (BATCH_SIZE * STEPS_PER_EPOCH, *INPUT_SHAPE))
    x = x.astype("float32")
    y = rng.integers(0, 10, len(x))

    class StepTimer(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self._started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._started)

    def mobilenet():
        return K.applications.MobileNetV2(input_shape=INPUT_SHAPE, weights=None, classes=10)

    K.utils.set_random_seed(0)
    models = {"float": mobilenet(), "qat": quantize_model(mobilenet())}
    for model in models.values():
        model.compile(K.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, verbose=0)
    medians = {"float": [], "qat": []}
    for round_index in range(rounds):
        order = ("float", "qat") if round_index % 2 == 0 else ("qat", "float")
        for name in order:
            timer = StepTimer()
            models[name].fit(x, y, batch_size=BATCH_SIZE, epochs=1, callbacks=[timer], verbose=0)
            medians[name].append(statistics.median(timer.times[2:]))
    ratios = [q / f for f, q in zip(medians["float"], medians["qat"])]
    return {
        "float_step_ms": statistics.median(medians["float"]) * 1e3,
        "qat_step_ms": statistics.median(medians["qat"]) * 1e3,
        "overhead": statistics.median(ratios),
        "overhead_rounds": [round(r, 3) for r in ratios],
        "versions": {"tf_keras": K.__version__, "tfmot": getattr(tfmot, "__version__", "?")}
        if framework == "tfmot"
        else {},
    }


def run_tfmot(rounds):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--tfmot-worker", str(rounds)],
        env=env, capture_output=True, text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("TFMOT_RESULT "):
            return json.loads(line[len("TFMOT_RESULT "):])
    raise RuntimeError(f"tfmot worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def markdown(result):
    rows = [
        "| framework | float step ms | QAT step ms | QAT / float (median of rounds) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("keras_tflq", "tfmot"):
        r = result[name]
        rows.append(
            f"| {name} | {r['float_step_ms']:.1f} | {r['qat_step_ms']:.1f} | {r['overhead']:.2f} |"
        )
    rows += [
        "",
        "| target | result |",
        "|---|---|",
        f"| keras_tflq QAT step overhead <= tfmot's | {result['meets_target']} |",
    ]
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 timing rounds")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 6)")
    parser.add_argument("--tfmot-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help="also write the results as markdown to this file")
    args = parser.parse_args(argv)
    if args.tfmot_worker:
        print("TFMOT_RESULT " + json.dumps(measure("tfmot", int(args.tfmot_worker))))
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
        "tfmot": run_tfmot(rounds),
    }
    result["meets_target"] = result["keras_tflq"]["overhead"] <= result["tfmot"]["overhead"]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = _report.machine_info(result["tfmot"].pop("versions"))
    result["keras_tflq"].pop("versions")
    print(json.dumps(result))
    print()
    print(markdown(result))
    if args.output:
        _report.write_results(
            args.output, "QAT step-time overhead on MobileNetV2, keras_tflq vs tfmot (issue 3)",
            result, markdown(result),
        )


if __name__ == "__main__":
    main()
