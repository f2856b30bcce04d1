"""Benchmark (issue 2): TFLiteExport's export time vs a hand-written converter
call.

For each mode (float32, dynamic, int8) and model, the two ways of getting a
`.tflite` file out of a trained Keras model are timed side by side, in one
process, interleaved (A, B, B, A, A, B, ...), after one discarded warm-up
round each:

* callback: `keras_tflq.TFLiteExport(mode, check_conversion=False,
  evaluate=False)` in a `fit(epochs=1)`; its hooks (`on_train_begin`,
  `on_epoch_end`, `on_train_end`) are wrapped on the instance with
  `time.perf_counter`, so the time is exactly what the callback adds to
  `fit()`: drawing the calibration set, conversion,
  the integer-only check, inspection, JSON report, atomic writes.
* hand-written: the usual user code, `tf.lite.TFLiteConverter.from_keras_model`
  with the same settings (int8: `Optimize.DEFAULT`, representative dataset
  of the same 200 validation samples, `TFLITE_BUILTINS_INT8`, int8 I/O)
  and writing the bytes to a file.

The model is the same object for both; each round first fits it for one
epoch (with the callback) so both convert a freshly trained model.

A third, diagnostic side C times the callback's own route written by hand
(`model.export(format="tf_saved_model")` + `from_saved_model`, same
settings, no checks/report), to split the overhead between the conversion
route and the callback's extra work. The callback's time is also split
into its reported `conversion_seconds` and the rest (calibration draw,
integer-only check, inspection, report, writes).

Prints one JSON line, then a markdown table (median seconds and the ratio
callback / hand-written; target <= 1.10).

Usage:
    python bench/export_overhead.py   # digits CNN + MobileNetV2, 7 reps
    python bench/export_overhead.py --quick    # digits CNN only, 3 reps
    # the cost of isolate_conversion=True:
    python bench/export_overhead.py --quick --isolate
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _report  # noqa: E402  (bench/ is on sys.path when a script runs)
import numpy as np  # noqa: E402

MODES = ("float32", "dynamic", "int8")
CALIBRATION_SAMPLES = 200
TARGET_RATIO = 1.10


def digits_data(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=CALIBRATION_SAMPLES, random_state=seed, stratify=y
    )
    return (x_train, y_train), (x_val, y_val)


def digits_cnn():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )


def mobilenet_data():
    rng = np.random.default_rng(0)
    x_train = rng.random((64, 32, 32, 3), dtype=np.float32)
    y_train = rng.integers(0, 10, 64).astype("int32")
    x_val = rng.random((CALIBRATION_SAMPLES, 32, 32, 3), dtype=np.float32)
    y_val = rng.integers(0, 10, CALIBRATION_SAMPLES).astype("int32")
    return (x_train, y_train), (x_val, y_val)


def mobilenet():
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=10, name="mobilenetv2_32"
    )


def tiny_cnn():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="tiny_cnn",
    )


MODELS = {
    "digits_cnn": (digits_cnn, digits_data, 64),
    "mobilenetv2_32": (mobilenet, mobilenet_data, 32),
    # For tests of the benchmark pipeline (bench/run.py).
    "tiny_cnn": (tiny_cnn, digits_data, 64),
}


class HookTimer:
    """Wraps a callback's hooks on the instance and sums their wall time."""

    HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end")

    def __init__(self, callback):
        self.seconds = 0.0
        for name in self.HOOKS:
            original = getattr(callback, name)
            setattr(callback, name, self._timed(original))

    def _timed(self, original):
        def hook(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return hook

    def reset(self):
        self.seconds = 0.0


def hand_written(model, mode, x_val, path):
    """What a user writes without the callback (timed from here)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    content = hand_written_settings(
        converter, mode, lambda i: [x_val[i : i + 1]], len(x_val)
    ).convert()
    with open(path, "wb") as f:
        f.write(content)
    return len(content)


def hand_written_settings(converter, mode, sample, count):
    """The converter flags a user writes by hand for `mode`; `sample(i)` is one
    calibration sample."""
    import tensorflow as tf

    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        converter.representative_dataset = lambda: (
            sample(i) for i in range(count)
        )
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def hand_written_saved_model(model, mode, x_val, path):
    """Diagnostic side C: a Keras SavedModel export, then `from_saved_model`
    (the route the callback takes only for dict-input models), by hand."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bench_sm_") as saved_model_dir:
        model.export(saved_model_dir, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        name = model.inputs[0].name
        sample = lambda i: {name: x_val[i : i + 1]}  # noqa: E731
        content = hand_written_settings(
            converter, mode, sample, len(x_val)
        ).convert()
    with open(path, "wb") as f:
        f.write(content)
    return len(content)


@contextlib.contextmanager
def quiet():
    """Both sides print (Keras' exporter, the converter); keep stdout for
    results."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def bench_model(model_name, reps, workdir, modes=MODES, isolate=None):
    import keras
    import tensorflow as tf  # noqa: F401

    import keras_tflq

    build, data, batch_size = MODELS[model_name]
    (x_train, y_train), (x_val, y_val) = data()
    x_val = np.ascontiguousarray(x_val[:CALIBRATION_SAMPLES])
    y_val = y_val[:CALIBRATION_SAMPLES]
    model = build()
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    rows = []
    for mode in modes:
        callback = keras_tflq.TFLiteExport(
            os.path.join(workdir, f"{model_name}_cb_{mode}.tflite"),
            mode=mode,
            check_conversion=False,
            evaluate=False,
            verbose=0,
            isolate_conversion=isolate,
        )
        timer = HookTimer(callback)
        baseline_path = os.path.join(
            workdir, f"{model_name}_hand_{mode}.tflite"
        )

        def run_callback(timer=timer, callback=callback):
            timer.reset()
            with quiet():
                model.fit(
                    x_train,
                    y_train,
                    validation_data=(x_val, y_val),
                    batch_size=batch_size,
                    epochs=1,
                    callbacks=[callback],
                    verbose=0,
                )
            return timer.seconds, os.path.getsize(callback.exported_path)

        def run_hand(mode=mode, baseline_path=baseline_path):
            started = time.perf_counter()
            with quiet():
                size = hand_written(model, mode, x_val, baseline_path)
            return time.perf_counter() - started, size

        def run_saved_model(mode=mode, baseline_path=baseline_path):
            started = time.perf_counter()
            with quiet():
                size = hand_written_saved_model(
                    model, mode, x_val, baseline_path
                )
            return time.perf_counter() - started, size

        cb_times, hand_times, sm_times, conv_times = [], [], [], []
        cb_size = hand_size = None
        # Round 0 is a discarded warm-up; then A,B,C / C,B,A alternately.
        for rep in range(reps + 1):
            order = (run_callback, run_hand, run_saved_model)
            order = order if rep % 2 == 0 else order[::-1]
            for fn in order:
                seconds, size = fn()
                if fn is run_callback:
                    cb_size = size
                    if rep:
                        cb_times.append(seconds)
                        conv_times.append(callback.report["conversion_seconds"])
                elif fn is run_hand:
                    hand_size = size
                    if rep:
                        hand_times.append(seconds)
                elif rep:
                    sm_times.append(seconds)
        cb_med = statistics.median(cb_times)
        hand_med = statistics.median(hand_times)
        sm_med = statistics.median(sm_times)
        conv_med = statistics.median(conv_times)
        ratios = [c / h for c, h in zip(cb_times, hand_times, strict=False)]
        rows.append(
            {
                "model": model_name,
                "mode": mode,
                "reps": reps,
                "callback_s_median": round(cb_med, 4),
                "hand_written_s_median": round(hand_med, 4),
                "ratio_of_medians": round(cb_med / hand_med, 3),
                "ratio_paired_median": round(statistics.median(ratios), 3),
                "ratio_paired_min": round(min(ratios), 3),
                "ratio_paired_max": round(max(ratios), 3),
                "callback_conversion_s_median": round(conv_med, 4),
                "callback_non_conversion_s_median": round(
                    statistics.median(
                        c - v
                        for c, v in zip(cb_times, conv_times, strict=False)
                    ),
                    4,
                ),
                "hand_saved_model_s_median": round(sm_med, 4),
                "ratio_saved_model_route_vs_hand": round(sm_med / hand_med, 3),
                "callback_bytes": cb_size,
                "hand_written_bytes": hand_size,
                "callback_s_all": [round(t, 4) for t in cb_times],
                "hand_written_s_all": [round(t, 4) for t in hand_times],
                "meets_target": cb_med / hand_med <= TARGET_RATIO,
            }
        )
        print(
            f"[export_overhead] {model_name} {mode}: callback {cb_med:.3f}s, "
            f"hand-written {hand_med:.3f}s, ratio {cb_med / hand_med:.3f}",
            file=sys.stderr,
        )
    keras.backend.clear_session()
    return rows


def markdown(rows):
    lines = [
        "| model | mode | callback s (median) | hand-written s (median) | "
        "ratio (medians) "
        "| paired ratio median [min, max] | bytes callback / hand | <= 1.10 "
        "| of which conversion s / rest s | hand via SavedModel s (ratio to "
        "hand) |",
        "|---|---|---:|---:|---:|---|---|:---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['callback_s_median']:.3f} "
            f"| {r['hand_written_s_median']:.3f} | {r['ratio_of_medians']:.3f} "
            f"| {r['ratio_paired_median']:.3f} [{r['ratio_paired_min']:.3f}, "
            f"{r['ratio_paired_max']:.3f}] "
            f"| {r['callback_bytes']} / {r['hand_written_bytes']} "
            f"| {'yes' if r['meets_target'] else 'NO'} "
            f"| {r['callback_conversion_s_median']:.3f} / "
            f"{r['callback_non_conversion_s_median']:.3f} "
            f"| {r['hand_saved_model_s_median']:.3f} "
            f"({r['ratio_saved_model_route_vs_hand']:.3f}) |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="digits CNN only, 3 repetitions"
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions per side (default 7, quick 3)",
    )
    parser.add_argument(
        "--models",
        default=None,
        help=f"comma-separated subset of {sorted(MODELS)} "
        "(default all; quick: digits_cnn)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="also write the results as markdown to this file",
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help=(
            "convert in a child process (isolate_conversion=True), to "
            "measure what isolation costs"
        ),
    )
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    models = (
        args.models.split(",")
        if args.models
        else (["digits_cnn"] if args.quick else list(MODELS))
    )
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_export_") as workdir:
        for name in models:
            rows.extend(
                bench_model(
                    name,
                    reps,
                    workdir,
                    isolate=True if args.isolate else None,
                )
            )
    result = {
        "benchmark": "export_overhead",
        "target_ratio_max": TARGET_RATIO,
        "quick": args.quick,
        "isolate_conversion": True if args.isolate else None,
        "rows": rows,
        "all_meet_target": all(r["meets_target"] for r in rows),
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": _report.machine_info(),
    }
    print(json.dumps(result))
    print()
    print(markdown(rows))
    if args.output:
        _report.write_results(
            args.output,
            "TFLiteExport export time vs hand-written TFLiteConverter (issue "
            "2)",
            result,
            markdown(rows),
        )


if __name__ == "__main__":
    main()
