"""Benchmark (issue 9): sequence and attention models on digits, float vs int8.

* data: `sklearn.datasets.load_digits`, a fixed stratified split (seed 0):
  540 test, 200 validation (PTQ calibration), 1057 train. Three views:
  rows as sequences (8 time steps x 8 features, scaled to [0, 1]) for the
  recurrent models; 4x4 patches (4 tokens x 16 features) for a small
  vision transformer; the 64 pixel intensities (integers 0-16) as tokens
  for an Embedding model.
* models: LSTM(32), GRU(32), SimpleRNN(32), Bidirectional(LSTM(16)), each
  followed by Dense(10); ViT: Dense(32) patch projection ->
  MultiHeadAttention(2 heads) -> residual -> LayerNormalization ->
  Dense(64, gelu) -> Dense(32) -> residual -> LayerNormalization ->
  Flatten -> Dense(10); Embedding(17, 8) -> Flatten -> Dense(32, relu) ->
  Dense(10). Adam 1e-2 (3e-3 for the ViT), `--epochs` epochs, batch 32.
* artifacts: `keras_tflq.export_tflite` in "float32" and "int8" (PTQ,
  calibrated on the validation split; int8 I/O except the int32 tokens).
  For the LSTM model, also the int8 artifact with the LSTM unrolled
  instead of fused (the `fuse_lstm=False` path of the sequence export).
* accuracy: test set through `LiteRTModel` (batch 1, variables reset per
  sample); argmax agreement of each artifact with the float Keras model.
* latency: one interpreter per artifact (default op resolver, XNNPACK,
  `num_threads=1`), batch 1, median of `--runs` invokes after warm-up.

* QAT int8: from the float weights, `--qat-epochs` epochs at Adam 1e-3,
  `quantize_model` alone (no annotation, no float layer): recurrent
  layers with their fixed-range gates, Embedding with its int8 table,
  MultiHeadAttention, LayerNormalization, Dense on 3-D inputs and residual
  adds from the default scheme. The recurrent models' int8 export is
  calibrated on the validation split (the converter quantizes the cells'
  internals from calibration statistics only); the ViT and the Embedding
  model export from their learned ranges, without calibration data.
  Its agreement is with the Keras QAT model. Control: the float model
  fine-tuned for the same epochs at the same rate, no quantization.
* `--kinds` runs some of the models only (default: all).
* `--lstm-sweep` (only): an untrained LSTM + Dense(10) at four sizes,
  fused and unrolled, in float32, dynamic and int8, plus tf_keras' own
  int8 LSTM with the same weights; size, ops, CPU time of one thread
  (with and without XNNPACK: on a shared machine it leaves out the time
  other jobs hold the core) and wall time with 1 and 2 threads.
* `--lstm-kernel` (only): the fused LSTM at six sizes varying steps, units
  and features one at a time (CPU time, builtin kernels), and the fit of
  the int8 time as activations (per unit and step) + gate products (per
  MAC).
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _models import SEQUENCE_KINDS  # noqa: E402
from _models import digits_patches  # noqa: E402
from _models import sequence_model as build  # noqa: E402
from _report import machine_info  # noqa: E402
from _report import write_results  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.conversion.modes import configure_converter  # noqa: E402
from keras_tflq.conversion.sequence_checks import calibration_need  # noqa: E402
from keras_tflq.conversion.sequence_export import sequence_converter  # noqa: E402
from keras_tflq.runtime.inspection import inspect_tflite  # noqa: E402
from keras_tflq.runtime.litert_model import LiteRTModel  # noqa: E402


def load_views(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels, labels = digits.data.astype("float32"), digits.target
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index, test_size=540, stratify=labels, random_state=seed
    )
    train, val = train_test_split(
        rest, test_size=200, stratify=labels[rest], random_state=seed
    )
    images = pixels.reshape(-1, 8, 8) / 16.0
    views = {
        "sequence": images,
        "patches": digits_patches(images),
        "tokens": pixels.astype("int32"),
    }
    split = {"train": train, "val": val, "test": test}
    return {
        name: {part: (view[i], labels[i]) for part, i in split.items()}
        for name, view in views.items()
    }


VIEW = {"embedding": "tokens", "vit": "patches"}
KINDS = SEQUENCE_KINDS


def latency_ms(path, sample, runs, threads=1, cpu=False, xnnpack=True):
    """Median invoke time in ms, batch 1, variables reset before each invoke.

    `cpu=True` times the calling thread's CPU time (`time.thread_time`)
    instead of the wall clock: on a shared machine it leaves out the time
    other processes hold the core (with `threads=1` the interpreter runs on
    the calling thread). `xnnpack=False` runs TFLite's builtin kernels only
    (no default delegate).
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    options = {}
    if not xnnpack:
        options["experimental_op_resolver_type"] = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    interpreter = Interpreter(model_path=path, num_threads=threads, **options)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    if details["dtype"] in (np.int8, np.uint8):
        scale, zero_point = details["quantization"]
        sample = np.round(sample / scale + zero_point)
    sample = sample.astype(details["dtype"])
    clock = time.thread_time if cpu else time.perf_counter
    times = []
    for i in range(runs + 10):
        interpreter.reset_all_variables()
        interpreter.set_tensor(details["index"], sample)
        started = clock()
        interpreter.invoke()
        if i >= 10:
            times.append(clock() - started)
    return 1000 * statistics.median(times)


def score(path, model, x, y, runs):
    predicted = LiteRTModel(model_path=path).predict(x)
    reference = model.predict(x, verbose=0).argmax(1)
    report = inspect_tflite(path)
    return {
        "accuracy": float(np.mean(predicted.argmax(1) == y)),
        "agreement": float(np.mean(predicted.argmax(1) == reference)),
        "kb": round(os.path.getsize(path) / 1024, 1),
        "latency_ms": round(latency_ms(path, x[:1], runs), 4),
        "all_integer": report["all_integer"],
        "ops": sum(report["op_counts"].values()),
    }


def unrolled_lstm(model, x_val, path, mode):
    """The LSTM artifact with the LSTM unrolled instead of fused."""
    name = model.inputs[0].name

    def representative_dataset():
        for sample in x_val:
            yield {name: sample[None]}

    with contextlib.ExitStack() as stack:
        converter, _ = sequence_converter(model, stack, fuse_lstm=False)
        configure_converter(
            converter,
            mode,
            representative_dataset=representative_dataset,
            input_type="int8" if mode == "int8" else "float32",
            output_type="int8" if mode == "int8" else "float32",
        )
        content = converter.convert()
    with open(path, "wb") as file:
        file.write(content)


SWEEP_SIZES = ((8, 8, 16), (8, 8, 32), (32, 16, 64), (64, 32, 128))
# Fused int8 LSTMs whose steps, units and features vary one at a time, for
# the cost model of TFLite's integer LSTM kernel (`--lstm-kernel`).
KERNEL_SIZES = (
    (32, 32, 128),
    (64, 32, 128),
    (128, 32, 128),
    (64, 32, 64),
    (64, 32, 256),
    (64, 224, 128),
)
SWEEP_MODES = ("float32", "dynamic", "int8")
TF_KERAS_FUSED = "tf_keras fused"


def sweep_model(steps, features, units):
    """An untrained (Glorot, seed 0) `LSTM(units)` + `Dense(10)`, and 64
    uniform random sequences to calibrate it on."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((steps, features)),
            keras.layers.LSTM(units),
            keras.layers.Dense(10),
        ],
        name=f"lstm_{steps}x{features}_{units}",
    )
    x = np.random.RandomState(0).rand(64, steps, features)
    return model, x.astype("float32")


def tf_keras_lstm(model, x, path):
    """The reference for TFLite's own int8 LSTM: tf_keras' `LSTM` with
    `model`'s weights, at a fixed batch of 1, converted by a hand-written
    `TFLiteConverter` to full int8 (calibrated on `x`)."""
    import tensorflow as tf
    import tf_keras

    steps, features = model.input_shape[1:]
    reference = tf_keras.Sequential(
        [
            tf_keras.Input((steps, features), batch_size=1),
            tf_keras.layers.LSTM(model.layers[0].units),
            tf_keras.layers.Dense(10),
        ]
    )
    reference.set_weights(model.get_weights())
    converter = tf.lite.TFLiteConverter.from_keras_model(reference)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    content = converter.convert()
    with open(path, "wb") as file:
        file.write(content)


def lstm_sweep(args):
    """Fused vs unrolled LSTM artifacts at growing sizes, in float32,
    dynamic and int8: size and latency. Untrained weights, calibrated on
    uniform random sequences: only size and speed are compared. In int8,
    also tf_keras' own fused LSTM converted by hand (the same weights)."""
    folder = tempfile.mkdtemp(prefix="lstm_sweep_")
    rows = []
    for steps, features, units in SWEEP_SIZES:
        model, x = sweep_model(steps, features, units)
        for mode in SWEEP_MODES:
            paths = ["fused", "unrolled"]
            if mode == "int8":
                paths.append(TF_KERAS_FUSED)
            for kind in paths:
                path = os.path.join(
                    folder, f"{model.name}_{mode}_{kind.split()[0]}.tflite"
                )
                if kind == "fused":
                    keras_tflq.export_tflite(
                        model, path, mode=mode, calibration_data=x
                    )
                elif kind == "unrolled":
                    unrolled_lstm(model, x, path, mode)
                else:
                    tf_keras_lstm(model, x, path)
                rows.append(
                    {
                        "steps": steps,
                        "features": features,
                        "units": units,
                        "mode": mode,
                        "path": kind,
                        **sweep_measures(path, x[:1], args.runs),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def sweep_measures(path, sample, runs):
    """Size, op count, and four latencies of one artifact: CPU time with 1
    thread (XNNPACK, then builtin kernels only), wall time with 1 and 2
    threads (XNNPACK)."""
    report = inspect_tflite(path)
    return {
        "kb": round(os.path.getsize(path) / 1024, 1),
        "ops": sum(report["op_counts"].values()),
        "all_integer": report["all_integer"],
        "cpu_ms_1_thread": round(latency_ms(path, sample, runs, cpu=True), 4),
        "cpu_ms_builtin": round(
            latency_ms(path, sample, runs, cpu=True, xnnpack=False), 4
        ),
        "ms_1_thread": round(latency_ms(path, sample, runs, 1), 4),
        "ms_2_threads": round(latency_ms(path, sample, runs, 2), 4),
    }


def sweep_table(rows):
    lines = [
        "| steps x features, units | mode | path | ops | KB | CPU ms "
        "(1 thread) | CPU ms, no XNNPACK (1 thread) | wall ms (1 thread) "
        "| wall ms (2 threads) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['steps']} x {row['features']}, {row['units']} | "
            f"{row['mode']} | {row['path']} | {row['ops']} | {row['kb']} | "
            f"{row['cpu_ms_1_thread']} | {row['cpu_ms_builtin']} | "
            f"{row['ms_1_thread']} | {row['ms_2_threads']} |"
        )
    return "\n".join(lines)


def lstm_kernel(args):
    """Where the fused int8 LSTM's time goes: fused artifacts whose steps,
    units and features vary one at a time, timed on TFLite's builtin
    kernels (CPU time, 1 thread), and the least-squares fit of the int8
    time as `a * steps * units + b * MACs`, MACs = steps * 4 * units *
    (units + features): `a` is the per-step, per-unit cost of the gates'
    activations and the cell update, `b` the cost of one
    multiply-accumulate of the gate matrix products."""
    folder = tempfile.mkdtemp(prefix="lstm_kernel_")
    rows = []
    for steps, features, units in KERNEL_SIZES:
        model, x = sweep_model(steps, features, units)
        row = {"steps": steps, "features": features, "units": units}
        row["macs"] = steps * 4 * units * (units + features)
        for mode in SWEEP_MODES:
            path = os.path.join(folder, f"{model.name}_{mode}.tflite")
            keras_tflq.export_tflite(model, path, mode=mode, calibration_data=x)
            row[f"{mode}_cpu_ms"] = round(
                latency_ms(path, x[:1], args.runs, cpu=True, xnnpack=False), 4
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
    terms = np.array(
        [[r["steps"] * r["units"], r["macs"]] for r in rows], dtype="float64"
    )
    times = np.array([r["int8_cpu_ms"] for r in rows])
    (per_unit_step, per_mac), *_ = np.linalg.lstsq(terms, times, rcond=None)
    for row, (elementwise, macs) in zip(rows, terms, strict=True):
        fitted = per_unit_step * elementwise + per_mac * macs
        row["int8_fit_ms"] = round(float(fitted), 4)
        row["int8_elementwise_share"] = round(
            float(per_unit_step * elementwise / fitted), 3
        )
    fit = {
        "ns_per_unit_step": round(float(per_unit_step) * 1e6, 1),
        "gmac_per_s": round(1e-6 / float(per_mac), 2),
    }
    return rows, fit


def kernel_table(rows, fit):
    lines = [
        "| steps x features, units | MACs | float32 ms | dynamic ms | "
        "int8 ms | int8 fit ms | int8 share of activations + cell update |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['steps']} x {row['features']}, {row['units']} | "
            f"{row['macs']:,} | {row['float32_cpu_ms']} | "
            f"{row['dynamic_cpu_ms']} | {row['int8_cpu_ms']} | "
            f"{row['int8_fit_ms']} | "
            f"{100 * row['int8_elementwise_share']:.0f} % |"
        )
    lines += [
        "",
        f"Fit of the int8 time: {fit['ns_per_unit_step']} ns per unit and "
        f"time step (gate activations, cell update) + one MAC at "
        f"{fit['gmac_per_s']} GMAC/s (gate matrix products).",
    ]
    return "\n".join(lines)


def load_line(start, end):
    return (
        "Machine load (1-minute load average, `os.getloadavg`): "
        f"{start:.2f} at the start, {end:.2f} at the end."
    )


def qat_int8(model, view, folder, args):
    """QAT from the float weights, every layer by the default scheme.

    The recurrent models' export is calibrated on the validation split
    (their cells' internals need it); the ViT and the Embedding model are
    exported from their learned ranges, without calibration data.
    Also returns the float fine-tune control: the float model trained for
    the same extra epochs without quantization.
    """
    (x, y), (x_val, _) = view["train"], view["val"]
    x_test, y_test = view["test"]
    control = keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    control.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    control.fit(x, y, batch_size=32, epochs=args.qat_epochs, verbose=0)
    float_copy = keras.models.clone_model(model)
    float_copy.set_weights(model.get_weights())
    qat = keras_tflq.quantize_model(float_copy)
    qat.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    qat.fit(x, y, batch_size=32, epochs=args.qat_epochs, verbose=0)
    path = os.path.join(folder, f"{model.name}_qat_int8.tflite")
    report = keras_tflq.export_tflite(
        qat,
        path,
        mode="int8",
        calibration_data=x_val
        if calibration_need("int8", qat) == "required"
        else None,
    )
    row = score(path, qat, x_test, y_test, args.runs)
    row["calibrated"] = report["calibration"] is not None
    row["keras_qat_accuracy"] = round(
        float(qat.evaluate(x_test, y_test, verbose=0)[1]), 4
    )
    row["float_finetune_accuracy"] = round(
        float(control.evaluate(x_test, y_test, verbose=0)[1]), 4
    )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, default=list(KINDS)
    )
    parser.add_argument(
        "--output",
        default=os.path.join("bench", "results", "sequence_models.md"),
    )
    parser.add_argument(
        "--lstm-sweep",
        action="store_true",
        help="only the fused vs unrolled LSTM sweep (sizes, threads)",
    )
    parser.add_argument(
        "--lstm-kernel",
        action="store_true",
        help="only the cost model of the fused int8 LSTM kernel",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.lstm_sweep or args.lstm_kernel:
        load = os.getloadavg()[0]
        if args.lstm_sweep:
            rows = lstm_sweep(args)
            result = {"benchmark": "lstm_fused_vs_unrolled", "rows": rows}
            output = "lstm_fused_vs_unrolled.md"
            title = "Fused vs unrolled LSTM: size and latency"
            text = sweep_table(rows)
        else:
            rows, fit = lstm_kernel(args)
            result = {"benchmark": "lstm_int8_kernel", "rows": rows, "fit": fit}
            output = "lstm_int8_kernel.md"
            title = "Where TFLite's fused int8 LSTM spends its time"
            text = kernel_table(rows, fit)
        result["load_average"] = [load, os.getloadavg()[0]]
        result["machine"] = machine_info()
        result["wall_s"] = round(time.perf_counter() - started, 1)
        text = f"{load_line(*result['load_average'])}\n\n{text}"
        write_results(
            os.path.join("bench", "results", output), title, result, text
        )
        print(text)
        return
    views = load_views()
    folder = tempfile.mkdtemp(prefix="seq_bench_")
    rows = {}
    for kind in args.kinds:
        view = views[VIEW.get(kind, "sequence")]
        (x, y), (x_val, y_val) = view["train"], view["val"]
        x_test, y_test = view["test"]
        model = build(kind)
        model.fit(
            x, y, batch_size=32, epochs=args.epochs, verbose=0,
            validation_data=(x_val, y_val),
        )
        keras_acc = model.evaluate(x_test, y_test, verbose=0)[1]
        row = {"keras_float_accuracy": round(float(keras_acc), 4)}
        for mode in ("float32", "int8"):
            path = os.path.join(folder, f"{kind}_{mode}.tflite")
            report = keras_tflq.export_tflite(
                model, path, mode=mode, calibration_data=x_val
            )
            row[mode] = score(path, model, x_test, y_test, args.runs)
            if "sequence_layers" in report:
                row["sequence_layers"] = report["sequence_layers"]
        if kind == "lstm":
            for mode in ("float32", "int8"):
                path = os.path.join(folder, f"lstm_{mode}_unrolled.tflite")
                unrolled_lstm(model, x_val, path, mode)
                row[f"{mode}_unrolled"] = score(
                    path, model, x_test, y_test, args.runs
                )
        row["qat_int8"] = qat_int8(model, view, folder, args)
        rows[kind] = row
        print(kind, json.dumps(row), flush=True)
    result = {
        "benchmark": "sequence_models",
        "epochs": args.epochs,
        "models": rows,
        "machine": machine_info(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_results(
        args.output, "Sequence and attention models on digits", result,
        table(rows),
    )
    print(json.dumps(result))
    print(table(rows))


def table(rows):
    lines = [
        "| model | path | Keras float acc | float32 acc | int8 (PTQ) acc | "
        "int8 agreement | float fine-tune acc | QAT int8 acc | "
        "QAT agreement | float32 KB | int8 KB | float32 ms | int8 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in rows.items():
        paths = sorted(set(row.get("sequence_layers", {}).values())) or ["-"]
        f, q = row["float32"], row["int8"]
        lines.append(
            f"| {kind} | {', '.join(paths)} | "
            f"{row['keras_float_accuracy']:.4f} | {f['accuracy']:.4f} | "
            f"{q['accuracy']:.4f} | "
            f"{q['agreement']:.4f} | "
            f"{row['qat_int8']['float_finetune_accuracy']:.4f} | "
            f"{row['qat_int8']['accuracy']:.4f} | "
            f"{row['qat_int8']['agreement']:.4f} | {f['kb']} | {q['kb']} | "
            f"{f['latency_ms']} | {q['latency_ms']} |"
        )
        if "int8_unrolled" in row:
            u, v = row["float32_unrolled"], row["int8_unrolled"]
            lines.append(
                f"| {kind} (LSTM unrolled) | unrolled | - | "
                f"{u['accuracy']:.4f} | {v['accuracy']:.4f} | "
                f"{v['agreement']:.4f} | - | - | - | {u['kb']} | {v['kb']} | "
                f"{u['latency_ms']} | {v['latency_ms']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
