"""Benchmark (issue 3): keras_tflq QAT (Keras 3) vs tfmot QAT (tf_keras), side
by side.

Same model, data, epochs, optimizer and seeds in both frameworks:

* data: `sklearn.datasets.load_digits` (8x8x1, scaled to [0, 1]); a fixed
  stratified split (seed 0): 540 test, 200 validation (PTQ calibration and
  `validation_data`), 1057 train.
* model (BatchNormalization momentum 0.9): Conv2D+BN+ReLU ->
  [DepthwiseConv2D+BN+ReLU6 -> Conv2D 1x1+BN] + residual Add -> ReLU ->
  Conv2D(stride 2)+BN+ReLU -> GlobalAveragePooling -> Dense softmax. Built
  by the same code with `keras` and with `tf_keras`.
* optimizer: Adam, 1e-3 for float training; 2e-4 with cosine decay to 0
  over the QAT epochs (so the int8 accuracy is that of settled weights, not
  of one noisy last step).
* batches: per seed and phase, one `tf.data` shuffle order (seeded, reshuffled
  every epoch), identical in both frameworks, so the frameworks differ only
  in how they train, not in which batches they see.
* per seed: the Keras 3 model is built with `keras.utils.set_random_seed(seed)`;
  its initial weights W0 are handed to the tfmot worker, so both frameworks
  start float training from identical weights. Each framework trains float
  for N epochs (own float accuracy, own float step time). QAT then starts,
  in both frameworks, from the same float weights Wf (the Keras 3 ones), so
  the int8 comparison measures QAT and conversion only; QAT runs M epochs
  (`keras_tflq.quantize_model` / `tfmot.quantization.keras.quantize_model`).
* conversion to full-integer TFLite (int8 I/O, TFLITE_BUILTINS_INT8):
  keras_tflq with `TFLiteExport(mode="int8")` in the QAT `fit()`; tfmot with
  `tf.lite.TFLiteConverter.from_keras_model` + `Optimize.DEFAULT`. The float
  Keras 3 model also gets a PTQ-int8 artifact (`TFLiteExport(mode="int8")`
  calibrated on the 200 validation samples) and a float32 artifact
  (`TFLiteExport(mode="float32")`) from its float `fit()`.
* accuracy of every artifact on the test set with ai_edge_litert's
  `Interpreter` (own loop, batch 1, not the package's evaluator).
* step time: a callback times every train batch (`on_train_batch_begin` ->
  `on_train_batch_end`, `perf_counter`). The overhead compared is timed
  after training, within each framework, in alternating epochs (float,
  QAT, QAT, float, ...; `--timing-rounds` rounds of one epoch each): per
  round QAT median / float median, then the median over rounds, so machine
  drift hits both sides of every ratio. The step times during training
  (first epoch dropped) are reported too.
* latency: every artifact of the last seed in one interpreter each
  (default op resolver, i.e. XNNPACK; `num_threads=1`), batch 1, rounds
  interleaved across artifacts, median of all invokes.

tfmot switches the process to legacy Keras, so it runs in a subprocess
(`--tfmot-worker`, env `TF_USE_LEGACY_KERAS=1`) that prints JSON.

Prints one JSON line, then markdown tables. Targets: keras_tflq int8
accuracy >= tfmot's; keras_tflq QAT step-time overhead <= tfmot's.

Usage:
    python bench/qat_vs_tfmot.py            # 10 seeds, 20 float + 6 QAT epochs
    python bench/qat_vs_tfmot.py --quick    # 1 seed, 6 float + 2 QAT epochs
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import _qat_timing  # bench/ is on sys.path when a script runs
import _report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

TEST_SIZE = 540
VAL_SIZE = 200
SPLIT_SEED = 0
BATCH_SIZE = 32
FLOAT_LR = 1e-3
QAT_LR = 2e-4


# ------------------------------------------------------------------ shared


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest,
        y_rest,
        test_size=VAL_SIZE,
        random_state=SPLIT_SEED,
        stratify=y_rest,
    )
    return {
        "train": (x_train, y_train),
        "val": (x_val, y_val),
        "test": (x_test, y_test),
    }


# Offsets of the seeds that order the training batches in each phase.
FLOAT_ORDER = 0
QAT_ORDER = 1000


def train_batches(x, y, seed):
    """The training batches, reshuffled every epoch in an order fixed by
    `seed`: a `tf.data` pipeline, so both frameworks (same TensorFlow) see
    the same batches in the same order."""
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(BATCH_SIZE)
    )


def qat_optimizer(K, epochs):
    """Adam with QAT_LR decayed to 0 over the QAT epochs (cosine), so the
    final weights are not one noisy step among many."""
    steps = epochs * -(-(1797 - TEST_SIZE - VAL_SIZE) // BATCH_SIZE)
    return K.optimizers.Adam(K.optimizers.schedules.CosineDecay(QAT_LR, steps))


def build_model(K):
    """The same architecture with `keras` (Keras 3) or `tf_keras`."""
    L = K.layers
    inputs = K.Input((8, 8, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = L.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = L.BatchNormalization(momentum=0.9, name="bn_dw")(y)
    y = L.ReLU(6.0, name="relu6_dw")(y)
    y = L.Conv2D(16, 1, use_bias=False, name="pw")(y)
    y = L.BatchNormalization(momentum=0.9, name="bn_pw")(y)
    x = L.Add(name="add")([x, y])
    x = L.ReLU(name="relu_add")(x)
    x = L.Conv2D(
        32, 3, strides=2, padding="same", use_bias=False, name="conv2"
    )(x)
    x = L.BatchNormalization(momentum=0.9, name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(10, activation="softmax", name="logits")(x)
    return K.Model(inputs, outputs, name="digits_resnet")


def float_finetune_accuracy(
    K, model, weights_path, x, y, seed, epochs, x_test, y_test
):
    """The control: `model` reset to the float weights QAT started from,
    then trained like QAT (same optimizer, batches and epochs) without
    quantization. QAT accuracy minus this is the cost of quantization
    itself, apart from what the framework's training does."""
    shared = np.load(weights_path)
    model.set_weights([shared[f"w{i}"] for i in range(len(shared.files))])
    model.compile(
        qat_optimizer(K, epochs),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_batches(x, y, seed + QAT_ORDER), epochs=epochs, verbose=0)
    return float(model.evaluate(x_test, y_test, verbose=0)[1])


def tflite_accuracy(path, x, y):
    """Test accuracy of an artifact with ai_edge_litert, one sample per
    invoke."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    correct = 0
    for i in range(len(x)):
        sample = x[i : i + 1]
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            sample = np.clip(
                np.round(sample / scale + zero_point), info.min, info.max
            )
        interpreter.set_tensor(inp["index"], sample.astype(inp["dtype"]))
        interpreter.invoke()
        correct += int(
            np.argmax(interpreter.get_tensor(out["index"])[0]) == y[i]
        )
    return correct / len(x)


def artifact_info(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    ops = {}
    for d in interpreter._get_ops_details():
        ops[d["op_name"]] = ops.get(d["op_name"], 0) + 1
    float_ops = []
    for d in interpreter._get_ops_details():
        if d["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        dtypes = {
            interpreter._get_tensor_details(t, 0)["dtype"]
            for t in list(d["inputs"]) + list(d["outputs"])
            if t >= 0
        }
        if np.float32 in dtypes:
            float_ops.append(d["op_name"])
    io = [
        np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
    ]
    return {
        "bytes": os.path.getsize(path),
        "ops": dict(sorted(ops.items())),
        "float_ops": sorted(set(float_ops)),
        "io": io,
    }


def latencies(paths, x, rounds, invokes_per_round):
    """Median batch-1 invoke time (ms) per artifact, rounds interleaved."""
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for name, path in paths.items():
        interpreter = Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        sample = x[:1]
        if inp["dtype"] != np.float32:
            scale, zero_point = inp["quantization"]
            sample = np.round(sample / scale + zero_point)
        sample = sample.astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], sample)
        for _ in range(20):  # warm-up (XNNPACK delegate set-up, caches)
            interpreter.invoke()
        runners[name] = (interpreter, inp["index"], sample)
    times = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            interpreter, index, sample = runners[name]
            for _ in range(invokes_per_round):
                interpreter.set_tensor(index, sample)
                started = time.perf_counter()
                interpreter.invoke()
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


# ------------------------------------------------------------ tfmot worker


def tfmot_worker(spec):
    """Runs in a subprocess with TF_USE_LEGACY_KERAS=1; prints JSON on
    stdout."""
    import contextlib

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as K

    data = digits_split()
    x_train, y_train = data["train"]
    x_val, y_val = data["val"]
    x_test, y_test = data["test"]
    K.utils.set_random_seed(spec["seed"])
    model = build_model(K)
    init = np.load(spec["init_weights"])
    model.set_weights([init[f"w{i}"] for i in range(len(init.files))])
    model.compile(
        K.optimizers.Adam(FLOAT_LR),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    skip = spec["float_epochs"] > 1
    float_timer = _qat_timing.make_step_timer(K, skip)
    model.fit(
        train_batches(x_train, y_train, spec["seed"] + FLOAT_ORDER),
        validation_data=(x_val, y_val),
        epochs=spec["float_epochs"],
        callbacks=[float_timer],
        verbose=0,
    )
    float_acc = float(model.evaluate(x_test, y_test, verbose=0)[1])
    if spec["qat_start"] == "shared":
        shared = np.load(spec["float_weights"])
        model.set_weights([shared[f"w{i}"] for i in range(len(shared.files))])
    start_acc = float(model.evaluate(x_test, y_test, verbose=0)[1])

    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(
        qat_optimizer(K, spec["qat_epochs"]),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    qat_timer = _qat_timing.make_step_timer(K, spec["qat_epochs"] > 1)
    qat.fit(
        train_batches(x_train, y_train, spec["seed"] + QAT_ORDER),
        validation_data=(x_val, y_val),
        epochs=spec["qat_epochs"],
        callbacks=[qat_timer],
        verbose=0,
    )
    qat_acc = float(qat.evaluate(x_test, y_test, verbose=0)[1])

    started = time.perf_counter()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        converter = tf.lite.TFLiteConverter.from_keras_model(qat)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        ]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8

        def representative_dataset():
            # The converter refuses TFLITE_BUILTINS_INT8 without one even for a
            # QAT model; TFLiteExport likewise gets the same 200 validation
            # samples from fit(). The learned (FakeQuant) ranges take priority.
            for i in range(len(x_val)):
                yield [x_val[i : i + 1]]

        converter.representative_dataset = representative_dataset
        content = converter.convert()
    convert_s = time.perf_counter() - started
    with open(spec["output"], "wb") as f:
        f.write(content)
    result = {
        "float_acc": float_acc,
        "qat_start_acc": start_acc,
        "qat_keras_acc": qat_acc,
        "float_step_ms": float_timer.median() * 1e3,
        "qat_step_ms": qat_timer.median() * 1e3,
        "convert_s": convert_s,
        "tflite_int8_acc": tflite_accuracy(spec["output"], x_test, y_test),
        "float_finetune_acc": float_finetune_accuracy(
            K,
            model,
            spec["float_weights"],
            x_train,
            y_train,
            spec["seed"],
            spec["qat_epochs"],
            x_test,
            y_test,
        ),
        **_qat_timing.interleaved_step_times(
            K, model, qat, x_train, y_train, spec["timing_rounds"], BATCH_SIZE
        ),
        "versions": {
            "tf_keras": K.__version__,
            "tfmot": getattr(tfmot, "__version__", "?"),
        },
    }
    print("TFMOT_RESULT " + json.dumps(result))


# ------------------------------------------------------------ keras_tflq side


def run_seed(seed, float_epochs, qat_epochs, workdir, qat_start, timing_rounds):
    import contextlib

    import keras

    import keras_tflq

    data = digits_split()
    x_train, y_train = data["train"]
    x_val, y_val = data["val"]
    x_test, y_test = data["test"]
    paths = {
        "float32": os.path.join(workdir, f"s{seed}_float32.tflite"),
        "ptq_int8": os.path.join(workdir, f"s{seed}_ptq_int8.tflite"),
        "keras_tflq_qat_int8": os.path.join(
            workdir, f"s{seed}_tflq_qat_int8.tflite"
        ),
        "tfmot_qat_int8": os.path.join(
            workdir, f"s{seed}_tfmot_qat_int8.tflite"
        ),
    }
    init_path = os.path.join(workdir, f"s{seed}_init.npz")
    float_path = os.path.join(workdir, f"s{seed}_float.npz")

    keras.utils.set_random_seed(seed)
    model = build_model(keras)
    np.savez(
        init_path, **{f"w{i}": w for i, w in enumerate(model.get_weights())}
    )
    model.compile(
        keras.optimizers.Adam(FLOAT_LR),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    float_timer = _qat_timing.make_step_timer(keras, float_epochs > 1)
    exports = [
        keras_tflq.TFLiteExport(
            paths["float32"], mode="float32", evaluate=False, verbose=0
        ),
        keras_tflq.TFLiteExport(
            paths["ptq_int8"], mode="int8", evaluate=False, verbose=0
        ),
    ]
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        model.fit(
            train_batches(x_train, y_train, seed + FLOAT_ORDER),
            validation_data=(x_val, y_val),
            epochs=float_epochs,
            callbacks=[float_timer, *exports],
            verbose=0,
        )
    float_acc = float(model.evaluate(x_test, y_test, verbose=0)[1])
    np.savez(
        float_path, **{f"w{i}": w for i, w in enumerate(model.get_weights())}
    )

    # The tfmot side runs in a subprocess; which QAT runs first alternates
    # with the seed (odd seeds: tfmot first) so machine drift hits both.
    spec = {
        "seed": seed, "float_epochs": float_epochs, "qat_epochs": qat_epochs,
        "init_weights": init_path, "float_weights": float_path,
        "output": paths["tfmot_qat_int8"], "qat_start": qat_start,
        "timing_rounds": timing_rounds,
    }
    tfmot_result = None
    if seed % 2 == 1:
        tfmot_result = _qat_timing.run_tfmot_worker(__file__, json.dumps(spec))

    error = None
    tflq = {"float_acc": float_acc, "float_step_ms": float_timer.median() * 1e3}
    try:
        keras.utils.set_random_seed(seed)
        qat = keras_tflq.quantize_model(model)
        qat.compile(
            qat_optimizer(keras, qat_epochs),
            "sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        qat_timer = _qat_timing.make_step_timer(keras, qat_epochs > 1)
        export = keras_tflq.TFLiteExport(
            paths["keras_tflq_qat_int8"], mode="int8", evaluate=False, verbose=0
        )
        with (
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(devnull),
        ):
            qat.fit(
                train_batches(x_train, y_train, seed + QAT_ORDER),
                validation_data=(x_val, y_val),
                epochs=qat_epochs,
                callbacks=[qat_timer, export],
                verbose=0,
            )
        tflq.update(
            qat_keras_acc=float(qat.evaluate(x_test, y_test, verbose=0)[1]),
            qat_step_ms=qat_timer.median() * 1e3,
            convert_s=export.report["conversion_seconds"],
            quantization=export.report["quantization"],
            tflite_int8_acc=tflite_accuracy(
                paths["keras_tflq_qat_int8"], x_test, y_test
            ),
        )
        tflq["float_finetune_acc"] = float_finetune_accuracy(
            keras,
            model,
            float_path,
            x_train,
            y_train,
            seed,
            qat_epochs,
            x_test,
            y_test,
        )
        tflq.update(
            _qat_timing.interleaved_step_times(
                keras, model, qat, x_train, y_train, timing_rounds, BATCH_SIZE
            )
        )
    except Exception as exc:  # reported, not hidden
        import traceback

        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    if tfmot_result is None:
        tfmot_result = _qat_timing.run_tfmot_worker(__file__, json.dumps(spec))

    artifacts = {}
    for name, path in paths.items():
        if os.path.exists(path):
            artifacts[name] = {
                **artifact_info(path),
                "test_acc": tflite_accuracy(path, x_test, y_test),
            }
    return {
        "seed": seed,
        "keras_tflq": tflq,
        "keras_tflq_error": error,
        "tfmot": tfmot_result,
        "artifacts": artifacts,
        "paths": {k: v for k, v in paths.items() if os.path.exists(v)},
        "x_latency": x_test[:1],
    }


# ------------------------------------------------------------------ report


def mean_spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "std": float(np.std(values)),
        "n": len(values),
    }


def fmt(stat, scale=1.0, digits=4):
    if stat is None:
        return "n/a"
    return (
        f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f} "
        f"[{stat['min'] * scale:.{digits}f}, {stat['max'] * scale:.{digits}f}]"
    )


def summarize(runs, latency_ms, args, wall_s):
    def collect(framework, key):
        return [r[framework].get(key) if r[framework] else None for r in runs]

    summary = {}
    for fw in ("keras_tflq", "tfmot"):
        overhead = [
            q / f if q is not None and f else None
            for q, f in zip(
                collect(fw, "qat_step_ms"),
                collect(fw, "float_step_ms"),
                strict=False,
            )
        ]
        summary[fw] = {
            "float_acc": mean_spread(collect(fw, "float_acc")),
            "qat_keras_acc": mean_spread(collect(fw, "qat_keras_acc")),
            "tflite_int8_acc": mean_spread(collect(fw, "tflite_int8_acc")),
            "float_finetune_acc": mean_spread(
                collect(fw, "float_finetune_acc")
            ),
            "int8_minus_finetune": mean_spread(
                [
                    a - b if a is not None and b is not None else None
                    for a, b in zip(
                        collect(fw, "tflite_int8_acc"),
                        collect(fw, "float_finetune_acc"),
                        strict=False,
                    )
                ]
            ),
            "float_step_ms": mean_spread(collect(fw, "float_step_ms")),
            "qat_step_ms": mean_spread(collect(fw, "qat_step_ms")),
            "qat_step_overhead_in_training": mean_spread(overhead),
            "timed_float_step_ms": mean_spread(
                collect(fw, "timed_float_step_ms")
            ),
            "timed_qat_step_ms": mean_spread(collect(fw, "timed_qat_step_ms")),
            "qat_step_overhead": mean_spread(collect(fw, "timed_overhead")),
            "convert_s": mean_spread(collect(fw, "convert_s")),
        }
    artifacts = {}
    for name in (
        "float32",
        "ptq_int8",
        "keras_tflq_qat_int8",
        "tfmot_qat_int8",
    ):
        infos = [r["artifacts"][name] for r in runs if name in r["artifacts"]]
        if not infos:
            continue
        artifacts[name] = {
            "bytes": infos[-1]["bytes"],
            "io": infos[-1]["io"],
            "float_ops": infos[-1]["float_ops"],
            "ops": infos[-1]["ops"],
            "test_acc": mean_spread([i["test_acc"] for i in infos]),
            "latency_ms_median": latency_ms.get(name),
        }
    a = summary["keras_tflq"]["tflite_int8_acc"]
    b = summary["tfmot"]["tflite_int8_acc"]
    ca = summary["keras_tflq"]["int8_minus_finetune"]
    cb = summary["tfmot"]["int8_minus_finetune"]
    oa = summary["keras_tflq"]["qat_step_overhead"]
    ob = summary["tfmot"]["qat_step_overhead"]
    paired = [
        r["keras_tflq"]["tflite_int8_acc"] - r["tfmot"]["tflite_int8_acc"]
        for r in runs
        if r["keras_tflq"].get("tflite_int8_acc") is not None and r["tfmot"]
    ]
    targets = {
        "int8_acc_paired_diff": mean_spread(paired),
        "int8_acc_paired_wins_ties_losses": [
            sum(d > 1e-9 for d in paired),
            sum(abs(d) <= 1e-9 for d in paired),
            sum(d < -1e-9 for d in paired),
        ],
        "one_test_sample": 1.0 / TEST_SIZE,
        "int8_acc_keras_tflq_ge_tfmot": None
        if a is None or b is None
        else a["mean"] >= b["mean"],
        "int8_acc_diff_mean": None
        if a is None or b is None
        else a["mean"] - b["mean"],
        "quantization_cost_keras_tflq_le_tfmot": None
        if ca is None or cb is None
        else -ca["mean"] <= -cb["mean"],
        "quantization_cost_diff_mean": None
        if ca is None or cb is None
        else ca["mean"] - cb["mean"],
        "qat_overhead_keras_tflq_le_tfmot": None
        if oa is None or ob is None
        else oa["mean"] <= ob["mean"],
        "qat_overhead_ratio_keras_tflq_over_tfmot": None
        if oa is None or ob is None
        else oa["mean"] / ob["mean"],
    }
    return {
        "benchmark": "qat_vs_tfmot",
        "quick": args.quick,
        "protocol": {
            "seeds": args.seeds,
            "float_epochs": args.float_epochs,
            "qat_epochs": args.qat_epochs,
            "batch_size": BATCH_SIZE,
            "float_lr": FLOAT_LR,
            "qat_lr": QAT_LR,
            "qat_lr_schedule": "cosine decay to 0 over the QAT epochs",
            "split": {
                "train": 1797 - TEST_SIZE - VAL_SIZE,
                "val": VAL_SIZE,
                "test": TEST_SIZE,
                "seed": SPLIT_SEED,
            },
            "qat_start": args.qat_start,
            "timing_rounds": args.timing_rounds,
            "latency": {
                "rounds": args.latency_rounds,
                "invokes_per_round": 10,
                "num_threads": 1,
                "batch": 1,
            },
        },
        "summary": summary,
        "artifacts": artifacts,
        "targets": targets,
        "errors": [
            r["keras_tflq_error"] for r in runs if r["keras_tflq_error"]
        ],
        "per_seed": [
            {
                "seed": r["seed"],
                "keras_tflq": r["keras_tflq"],
                "tfmot": r["tfmot"],
                "artifact_test_acc": {
                    k: v["test_acc"] for k, v in r["artifacts"].items()
                },
            }
            for r in runs
        ],
        "wall_s": round(wall_s, 1),
    }


def markdown(result):
    s = result["summary"]
    lines = [
        "| metric (mean ± std [min, max] over seeds) | keras_tflq (Keras 3) | "
        "tfmot (tf_keras) |",
        "|---|---|---|",
        f"| float Keras test acc | {fmt(s['keras_tflq']['float_acc'])} | "
        f"{fmt(s['tfmot']['float_acc'])} |",
        f"| QAT Keras test acc | {fmt(s['keras_tflq']['qat_keras_acc'])} | "
        f"{fmt(s['tfmot']['qat_keras_acc'])} |",
        "| **int8 TFLite test acc** | "
        f"{fmt(s['keras_tflq']['tflite_int8_acc'])} | "
        f"{fmt(s['tfmot']['tflite_int8_acc'])} |",
        "| float fine-tune test acc (control: QAT's epochs without "
        f"quantization) | {fmt(s['keras_tflq']['float_finetune_acc'])} | "
        f"{fmt(s['tfmot']['float_finetune_acc'])} |",
        "| **int8 acc − float fine-tune acc (cost of quantization)** | "
        f"{fmt(s['keras_tflq']['int8_minus_finetune'])} | "
        f"{fmt(s['tfmot']['int8_minus_finetune'])} |",
        "| float step ms (median, in training) | "
        f"{fmt(s['keras_tflq']['float_step_ms'], digits=2)} | "
        f"{fmt(s['tfmot']['float_step_ms'], digits=2)} |",
        "| QAT step ms (median, in training) | "
        f"{fmt(s['keras_tflq']['qat_step_ms'], digits=2)} | "
        f"{fmt(s['tfmot']['qat_step_ms'], digits=2)} |",
        "| QAT / float step time (in training) | "
        f"{fmt(s['keras_tflq']['qat_step_overhead_in_training'], digits=2)} | "
        f"{fmt(s['tfmot']['qat_step_overhead_in_training'], digits=2)} |",
        "| float step ms (median, interleaved) | "
        f"{fmt(s['keras_tflq']['timed_float_step_ms'], digits=2)} | "
        f"{fmt(s['tfmot']['timed_float_step_ms'], digits=2)} |",
        "| QAT step ms (median, interleaved) | "
        f"{fmt(s['keras_tflq']['timed_qat_step_ms'], digits=2)} | "
        f"{fmt(s['tfmot']['timed_qat_step_ms'], digits=2)} |",
        "| **QAT / float step time (interleaved)** | "
        f"{fmt(s['keras_tflq']['qat_step_overhead'], digits=2)} | "
        f"{fmt(s['tfmot']['qat_step_overhead'], digits=2)} |",
        f"| int8 conversion s | {fmt(s['keras_tflq']['convert_s'], digits=2)} "
        f"| {fmt(s['tfmot']['convert_s'], digits=2)} |",
        "",
        "| artifact | bytes | I/O | ops | float ops | test acc (LiteRT) | "
        "latency µs, batch 1, XNNPACK, 1 thread (median) | latency vs float32 "
        "|",
        "|---|---:|---|---|---|---|---:|---:|",
    ]
    arts = result["artifacts"]
    base = arts.get("float32", {}).get("latency_ms_median")
    for name, a in arts.items():
        lat = a["latency_ms_median"]
        rel = f"{lat / base:.2f}" if lat and base else "n/a"
        lat_s = f"{lat * 1e3:.2f}" if lat else "n/a"
        lines.append(
            f"| {name} | {a['bytes']} | {a['io'][0]}/{a['io'][1]} "
            f"| {' '.join(f'{k}x{v}' for k, v in a['ops'].items())} | "
            f"{', '.join(a['float_ops']) or '-'} "
            f"| {fmt(a['test_acc'])} | {lat_s} | {rel} |"
        )
    t = result["targets"]

    def signed(value, spec):
        return value if value is None else format(value, spec)

    lines += [
        "",
        "| target | result |",
        "|---|---|",
        "| keras_tflq int8 acc >= tfmot int8 acc | "
        f"{t['int8_acc_keras_tflq_ge_tfmot']} "
        "(diff of means "
        f"{signed(t['int8_acc_diff_mean'], '+.4f')}; "
        f"paired per-seed diff {fmt(t['int8_acc_paired_diff'])}, "
        "wins/ties/losses "
        f"{'/'.join(map(str, t['int8_acc_paired_wins_ties_losses']))}; one "
        f"test sample = {t['one_test_sample']:.4f}) |",
        "| keras_tflq quantization cost (int8 − own float fine-tune) <= "
        "tfmot's | "
        f"{t['quantization_cost_keras_tflq_le_tfmot']} (difference of mean "
        "int8 − fine-tune: "
        f"{signed(t['quantization_cost_diff_mean'], '+.4f')}) |",
        "| keras_tflq QAT step overhead <= tfmot's | "
        f"{t['qat_overhead_keras_tflq_le_tfmot']} "
        "(ratio "
        f"{signed(t['qat_overhead_ratio_keras_tflq_over_tfmot'], '.2f')}) |",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 6 float + 2 QAT epochs"
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (default 10)"
    )
    parser.add_argument(
        "--float-epochs", type=int, default=None, help="default 20"
    )
    parser.add_argument(
        "--qat-epochs", type=int, default=None, help="default 6"
    )
    parser.add_argument(
        "--latency-rounds",
        type=int,
        default=None,
        help="rounds of 10 invokes (default 40)",
    )
    parser.add_argument(
        "--timing-rounds",
        type=int,
        default=None,
        help="alternating float/QAT timing epochs per framework and seed "
        "(default 6)",
    )
    parser.add_argument(
        "--qat-start",
        choices=("shared", "own"),
        default="shared",
        help="tfmot QAT starts from the Keras 3 float weights (shared) or its "
        "own float training",
    )
    parser.add_argument("--tfmot-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--output",
        default=None,
        help="also write the results as markdown to this file",
    )
    args = parser.parse_args(argv)
    if args.tfmot_worker:
        tfmot_worker(json.loads(args.tfmot_worker))
        return
    args.seeds = args.seeds or (1 if args.quick else 10)
    args.float_epochs = args.float_epochs or (6 if args.quick else 20)
    args.qat_epochs = args.qat_epochs or (2 if args.quick else 6)
    args.latency_rounds = args.latency_rounds or (10 if args.quick else 40)
    args.timing_rounds = args.timing_rounds or (2 if args.quick else 6)

    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_qat_") as workdir:
        for seed in range(args.seeds):
            run = run_seed(
                seed,
                args.float_epochs,
                args.qat_epochs,
                workdir,
                args.qat_start,
                args.timing_rounds,
            )
            runs.append(run)
            print(
                f"[qat_vs_tfmot] seed {seed}: keras_tflq int8 "
                f"{run['keras_tflq'].get('tflite_int8_acc')} tfmot int8 "
                f"{run['tfmot'].get('tflite_int8_acc')}",
                file=sys.stderr,
            )
        last = runs[-1]
        latency_ms = latencies(
            last["paths"], last["x_latency"], args.latency_rounds, 10
        )
    result = summarize(runs, latency_ms, args, time.perf_counter() - started)
    result["machine"] = _report.machine_info(
        (runs[-1]["tfmot"] or {}).get("versions")
    )
    print(json.dumps(result))
    print()
    print(markdown(result))
    if args.output:
        _report.write_results(
            args.output,
            "keras_tflq QAT vs tfmot QAT (issue 3)",
            result,
            markdown(result),
        )


if __name__ == "__main__":
    main()
