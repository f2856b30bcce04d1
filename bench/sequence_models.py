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
  int8 export calibrated on the validation split. LSTM:
  `RecurrentWeightsQuantizeConfig` (kernels); GRU and SimpleRNN:
  `RecurrentQuantizeConfig` (kernels and output range); Dense layers:
  the default scheme; the Bidirectional LSTM has no QAT config yet
  (`unsupported="float"`) and is calibrated (PTQ) in that export. The ViT
  and the Embedding model: `quantize_model` alone (MultiHeadAttention,
  LayerNormalization, Dense on 3-D inputs, residual adds from the default
  scheme; Embedding with `EmbeddingQuantizeConfig`, its int8 table), and
  their int8 export gets no calibration data (the learned ranges only).
  Its agreement is with the Keras QAT model. Control: the float model
  fine-tuned for the same epochs at the same rate, no quantization.
* `--kinds` runs some of the models only (default: all).
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
from _report import machine_info  # noqa: E402
from _report import write_results  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.conversion.modes import configure_converter  # noqa: E402
from keras_tflq.conversion.sequence_export import sequence_converter  # noqa: E402
from keras_tflq.quantization.default_scheme.attention_configs import (  # noqa: E402
    EmbeddingQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (  # noqa: E402
    RecurrentQuantizeConfig,
)
from keras_tflq.quantization.default_scheme.sequence_configs import (  # noqa: E402
    RecurrentWeightsQuantizeConfig,
)
from keras_tflq.runtime.inspection import inspect_tflite  # noqa: E402
from keras_tflq.runtime.litert_model import LiteRTModel  # noqa: E402

L = keras.layers


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
    patches = images.reshape(-1, 2, 4, 2, 4).transpose(0, 1, 3, 2, 4)
    views = {
        "sequence": images,
        "patches": patches.reshape(-1, 4, 16),
        "tokens": pixels.astype("int32"),
    }
    split = {"train": train, "val": val, "test": test}
    return {
        name: {part: (view[i], labels[i]) for part, i in split.items()}
        for name, view in views.items()
    }


def build(kind, annotate=False):
    """The float model; `annotate` wraps its recurrent layer for QAT."""
    keras.utils.set_random_seed(0)
    if kind == "embedding":
        inputs = keras.Input((64,), dtype="int32", name="pixels")
        embedding = L.Embedding(17, 8)
        if annotate:
            embedding = keras_tflq.quantize_annotate_layer(
                embedding, EmbeddingQuantizeConfig()
            )
        x = L.Flatten()(embedding(inputs))
        x = L.Dense(32, activation="relu")(x)
    elif kind == "vit":
        inputs = keras.Input((4, 16), name="patches")
        x = L.Dense(32)(inputs)
        attended = L.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
        x = L.LayerNormalization()(x + attended)
        hidden = L.Dense(64, activation="gelu")(x)
        x = L.LayerNormalization()(x + L.Dense(32)(hidden))
        x = L.Flatten()(x)
    else:
        inputs = keras.Input((8, 8), name="rows")
        layer = {
            "lstm": lambda: L.LSTM(32),
            "gru": lambda: L.GRU(32),
            "simple_rnn": lambda: L.SimpleRNN(32),
            "bidirectional_lstm": lambda: L.Bidirectional(L.LSTM(16)),
        }[kind]()
        if annotate and kind in QAT_CONFIGS:
            layer = keras_tflq.quantize_annotate_layer(
                layer, QAT_CONFIGS[kind]()
            )
        x = layer(inputs)
    outputs = L.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name=kind)
    model.compile(
        keras.optimizers.Adam(3e-3 if kind == "vit" else 1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


VIEW = {"embedding": "tokens", "vit": "patches"}
QAT_CONFIGS = {
    "lstm": RecurrentWeightsQuantizeConfig,
    "gru": RecurrentQuantizeConfig,
    "simple_rnn": RecurrentQuantizeConfig,
}
KINDS = ("lstm", "gru", "simple_rnn", "bidirectional_lstm", "vit", "embedding")
# Models `quantize_model` quantizes whole (no float layer, no calibration).
FULL_QAT = ("vit", "embedding")


def latency_ms(path, sample, runs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    if details["dtype"] in (np.int8, np.uint8):
        scale, zero_point = details["quantization"]
        sample = np.round(sample / scale + zero_point)
    sample = sample.astype(details["dtype"])
    times = []
    for i in range(runs + 10):
        interpreter.reset_all_variables()
        interpreter.set_tensor(details["index"], sample)
        started = time.perf_counter()
        interpreter.invoke()
        if i >= 10:
            times.append(time.perf_counter() - started)
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


def qat_int8(model, view, folder, args):
    """QAT from the float weights; PTQ for layers without a QAT config.

    LSTM, GRU and SimpleRNN carry the recurrent QAT configs; Dense layers
    and residual adds the default scheme's; the Bidirectional LSTM stays
    float in training and is calibrated on the validation split in the
    export. The ViT and the Embedding model are quantized whole and
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
    annotated = build(model.name, annotate=True)
    annotated.set_weights(model.get_weights())
    full = model.name in FULL_QAT
    qat = keras_tflq.quantize_model(
        annotated, unsupported="error" if full else "float"
    )
    qat.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    qat.fit(x, y, batch_size=32, epochs=args.qat_epochs, verbose=0)
    path = os.path.join(folder, f"{model.name}_qat_int8.tflite")
    report = keras_tflq.export_tflite(
        qat, path, mode="int8", calibration_data=None if full else x_val
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
    args = parser.parse_args()
    started = time.perf_counter()
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
