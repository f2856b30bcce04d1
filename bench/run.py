"""Every keras_tflq benchmark in one process tree: one JSON line and the
README's markdown table.

Sections (each can be left out or resized by the configuration):

* `export`: `TFLiteExport`'s export time vs a hand-written
  `TFLiteConverter` call (`bench/export_overhead.py`, in this process).
* `qat_accuracy`: keras_tflq QAT vs tfmot QAT on the digits, int8 accuracy
  (`bench/qat_vs_tfmot.py` in a subprocess; tfmot in its own).
* `step_time`: QAT / float step time, keras_tflq and tfmot, graph mode and
  XLA (`bench/qat_step_time.py` in a subprocess; tfmot in its own), and a
  profile of one QAT step vs one float step (op counts, CPU ms, the op
  types ranked by the self time QAT adds, from `tf.profiler`).
* `artifacts`: size and LiteRT latency (XNNPACK, batch 1, each thread
  count) of float32, float16, dynamic, PTQ int8 and QAT int8 artifacts.
* `batched`: `keras_tflq.LiteRTModel.predict` vs a one-sample invoke loop.

The configuration is `QUICK` or `FULL` updated by `--config` (a JSON object
or a path to one, merged section by section), so a test runs the whole
pipeline on a tiny configuration. This process fixes TensorFlow's thread
pools before anything runs (`threads`).

Usage:
    python bench/run.py --quick           # < 5 min on 2 cores
    python bench/run.py                   # < 20 min on 2 cores
    python bench/run.py --output bench/results/run.md
"""

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ARTIFACT_MODES = ("float32", "float16", "dynamic", "ptq_int8", "qat_int8")

FULL = {
    "threads": 2,
    "export": {"models": ["digits_cnn"], "reps": 5, "modes": None},
    "qat_accuracy": {
        "seeds": 3,
        "float_epochs": 20,
        "qat_epochs": 6,
        "timing_rounds": 2,
        "latency_rounds": 10,
    },
    "step_time": {
        "models": ["digits_cnn", "mobilenetv2_32"],
        "modes": ["graph", "xla"],
        "frameworks": ["keras_tflq", "tfmot"],
        # Pairs of steps (float and QAT alternating) per round; an XLA
        # MobileNetV2 step takes ~4x a graph one on the CPU.
        "rounds": 6,
        "steps": {
            "digits_cnn": 200,
            "mobilenetv2_32": 16,
            "mobilenetv2_32/xla": 4,
        },
        "threads": 1,
        "repeats": 2,
        "repeat_modes": ["graph"],
        # tfmot is compared in graph mode, the fastest for both frameworks
        # on the CPU (XLA is measured for keras_tflq): its XLA rows took
        # 181 of the 850 s of this section.
        "framework_modes": {"tfmot": ["graph"]},
        "profile": ["digits_cnn", "mobilenetv2_32"],
        "profile_steps": 20,
        "profile_rounds": 2,
    },
    "artifacts": {
        "models": ["mobilenetv2_224", "digits_cnn"],
        "modes": list(ARTIFACT_MODES),
        "threads": [1, 2],
        "rounds": 30,
        "invokes": 5,
        "calibration_samples": 32,
        "qat_steps": 4,
    },
    "batched": {
        "model": "digits_cnn",
        "samples": [300, 1000],
        "batch_size": 128,
        "threads": [1, 2],
        "rounds": 15,
    },
}

QUICK = {
    "threads": 2,
    "export": {"models": ["digits_cnn"], "reps": 2, "modes": ["int8"]},
    "qat_accuracy": {
        "seeds": 1,
        "float_epochs": 4,
        "qat_epochs": 2,
        "timing_rounds": 1,
        "latency_rounds": 2,
    },
    "step_time": {
        **FULL["step_time"],
        # MobileNetV2's step time (its build and trace take a minute per
        # framework) is in the full configuration only.
        "models": ["digits_cnn"],
        "modes": ["graph"],
        "rounds": 4,
        "steps": {"digits_cnn": 100, "mobilenetv2_32": 12},
        "repeats": 1,
        "profile": ["digits_cnn"],
        "profile_steps": 10,
    },
    "artifacts": {
        **FULL["artifacts"],
        "rounds": 8,
        "invokes": 3,
        "calibration_samples": 8,
        "qat_steps": 1,
    },
    "batched": {**FULL["batched"], "rounds": 5},
}

# Targets, as ratios (value, limit, direction).
TARGETS = {
    "int8_size_vs_float32": 0.27,
    "qat_int8_vs_ptq_int8_latency": 1.0,
    "int8_vs_float32_latency": 1.0,
    "batched_speedup": 5.0,
    "qat_step_overhead": 1.10,
}


def log(message):
    print(f"[run] {message}", file=sys.stderr, flush=True)


def merged(base, overrides):
    """`base` with each section replaced or updated by `overrides`
    (a section set to `null` is left out)."""
    config = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


# ------------------------------------------------------------------ models


def build_float_model(name):
    """The float Keras 3 model `name` and its input shape."""
    import keras

    keras.utils.set_random_seed(0)
    if name == "mobilenetv2_224":
        shape = (224, 224, 3)
        model = keras.applications.MobileNetV2(
            input_shape=shape, alpha=1.0, weights=None
        )
    elif name == "tiny_cnn":
        import qat_step_time

        shape = qat_step_time.MODELS[name][0]
        model = qat_step_time.build(keras, name)
    else:
        import export_overhead

        shape = (8, 8, 1)
        model = export_overhead.digits_cnn()
    return model, shape


def _inputs(shape, count, seed=0):
    if shape == (8, 8, 1):
        from sklearn.datasets import load_digits

        x = (load_digits().images / 16.0).astype("float32")[..., None]
        return x[np.random.default_rng(seed).permutation(len(x))[:count]]
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, *shape)).astype("float32")


# ---------------------------------------------------------------- sections


def section_export(config, workdir):
    import export_overhead

    rows = []
    for name in config["models"]:
        rows.extend(
            export_overhead.bench_model(
                name,
                config["reps"],
                workdir,
                tuple(config["modes"] or export_overhead.MODES),
            )
        )
    return [
        {
            key: row[key]
            for key in (
                "model",
                "mode",
                "reps",
                "callback_s_median",
                "hand_written_s_median",
                "ratio_paired_median",
                "ratio_paired_min",
                "ratio_paired_max",
            )
        }
        for row in rows
    ]


def _json_line(command, env=None):
    """Runs `command` and returns the first JSON object line it prints."""
    proc = subprocess.run(
        command, capture_output=True, text=True, env=env or dict(os.environ)
    )
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(
        f"{os.path.basename(command[1])} failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )


def section_qat_accuracy(config):
    result = _json_line(
        [
            sys.executable,
            os.path.join(BENCH, "qat_vs_tfmot.py"),
            "--seeds",
            str(config["seeds"]),
            "--float-epochs",
            str(config["float_epochs"]),
            "--qat-epochs",
            str(config["qat_epochs"]),
            "--timing-rounds",
            str(config["timing_rounds"]),
            "--latency-rounds",
            str(config["latency_rounds"]),
        ]
    )
    result.pop("machine", None)
    return result


def section_step_time(config, threads):
    step_config = {
        key: config[key]
        for key in ("models", "modes", "frameworks", "rounds", "steps")
    }
    for key in (
        "repeat_modes",
        "framework_modes",
        "profile",
        "profile_steps",
        "profile_rounds",
    ):
        if config.get(key):
            step_config[key] = config[key]
    # The step-time protocol's own pools (default: one intra-op thread).
    step_config["threads"] = config.get("threads", threads)
    step_config["repeats"] = config.get("repeats", 1)
    result = _json_line(
        [
            sys.executable,
            os.path.join(BENCH, "qat_step_time.py"),
            "--config",
            json.dumps(step_config),
        ]
    )
    result.pop("config", None)
    return result


def _export(model, path, mode, calibration):
    import keras_tflq

    started = time.perf_counter()
    keras_tflq.export_tflite(
        model,
        path,
        mode=mode,
        calibration_data=calibration if mode == "int8" else None,
        calibration_samples=len(calibration),
    )
    return time.perf_counter() - started


def _latency_ms(paths, threads, rounds, invokes):
    """Median invoke ms per artifact (batch 1, default resolver: XNNPACK),
    rounds interleaved across the artifacts (the order reversed every other
    round), in wall-clock and in process CPU time; and per round, each
    artifact's round median over the first artifact's, in wall-clock
    (`paired`) and in CPU time (`paired_cpu`)."""
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for key, path in paths.items():
        runner = Interpreter(model_path=path, num_threads=threads)
        runner.allocate_tensors()
        detail = runner.get_input_details()[0]
        sample = np.zeros(detail["shape"], detail["dtype"])
        runner.set_tensor(detail["index"], sample)
        runner.invoke()  # warm-up
        runners[key] = runner
    times = {key: [] for key in paths}
    cpu = {key: [] for key in paths}
    paired = {key: [] for key in paths}
    paired_cpu = {key: [] for key in paths}
    first = next(iter(paths))
    for index in range(rounds):
        keys = list(paths) if index % 2 == 0 else list(paths)[::-1]
        round_ms, round_cpu_ms = {}, {}
        for key in keys:
            wall, wall_cpu = [], []
            for _ in range(invokes):
                started, cpu_started = time.perf_counter(), time.process_time()
                runners[key].invoke()
                wall.append((time.perf_counter() - started) * 1e3)
                wall_cpu.append((time.process_time() - cpu_started) * 1e3)
            times[key] += wall
            cpu[key] += wall_cpu
            round_ms[key] = statistics.median(wall)
            round_cpu_ms[key] = statistics.median(wall_cpu)
        for key in paths:
            paired[key].append(round_ms[key] / round_ms[first])
            paired_cpu[key].append(round_cpu_ms[key] / round_cpu_ms[first])
    return {
        key: {
            "ms": round(statistics.median(times[key]), 4),
            "cpu_ms": round(statistics.median(cpu[key]), 4),
            "paired": paired[key],
            "paired_cpu": paired_cpu[key],
        }
        for key in paths
    }


def _structure(path):
    """Op counts and byte breakdown of one artifact."""
    from keras_tflq.runtime.inspection import byte_breakdown
    from keras_tflq.runtime.inspection import inspect_tflite

    report = inspect_tflite(path)
    return {
        "op_counts": report["op_counts"],
        "byte_breakdown": byte_breakdown(path),
    }


def section_artifacts(config, workdir):
    import keras

    import keras_tflq

    result = {}
    for name in config["models"]:
        model, shape = build_float_model(name)
        calibration = _inputs(shape, config["calibration_samples"])
        paths, export_s = {}, {}
        for mode in config["modes"]:
            path = os.path.join(workdir, f"{name}_{mode}.tflite")
            if mode == "qat_int8":
                qat = keras_tflq.quantize_model(model)
                qat.compile("adam", "sparse_categorical_crossentropy")
                classes = model.output_shape[-1]
                steps = config["qat_steps"]
                x = _inputs(shape, 2 * steps, seed=1)
                y = np.arange(len(x)) % classes
                qat.fit(x, y, batch_size=2, epochs=1, verbose=0)
                export_s[mode] = _export(qat, path, "int8", calibration)
            else:
                export_mode = "int8" if mode == "ptq_int8" else mode
                export_s[mode] = _export(model, path, export_mode, calibration)
            paths[mode] = path
            log(f"artifacts {name} {mode}: {export_s[mode]:.1f}s")
        latency = {
            str(threads): _latency_ms(
                paths, threads, config["rounds"], config["invokes"]
            )
            for threads in config["threads"]
        }
        result[name] = {
            mode: {
                "bytes": os.path.getsize(paths[mode]),
                "export_s": round(export_s[mode], 2),
                "latency_ms": {t: latency[t][mode]["ms"] for t in latency},
                "latency_cpu_ms": {
                    t: latency[t][mode]["cpu_ms"] for t in latency
                },
                **_structure(paths[mode]),
            }
            for mode in config["modes"]
        }
        if "ptq_int8" in paths and "qat_int8" in paths:
            # QAT over PTQ per round, both timed in the same round.
            ptq = {
                t: _latency_ms(
                    {"ptq_int8": paths["ptq_int8"],
                     "qat_int8": paths["qat_int8"]},
                    int(t),
                    config["rounds"],
                    config["invokes"],
                )
                for t in latency
            }
            result[name]["qat_int8"]["vs_ptq_int8"] = {
                t: _spread(ptq[t]["qat_int8"]["paired"]) for t in ptq
            }
            result[name]["qat_int8"]["vs_ptq_int8_cpu"] = {
                t: _spread(ptq[t]["qat_int8"]["paired_cpu"]) for t in ptq
            }
        keras.backend.clear_session()
    return result


def _spread(values):
    """Median, interquartile range and the two half-run medians."""
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else (
        values * 3
    )
    half = max(1, len(values) // 2)
    return {
        "median": round(statistics.median(values), 3),
        "iqr": [round(quartiles[0], 3), round(quartiles[2], 3)],
        "halves": [
            round(statistics.median(values[:half]), 3),
            round(statistics.median(values[half:] or values), 3),
        ],
    }


def _one_sample_loop(runner, x):
    """The loop a user writes without `LiteRTModel`: the input quantized
    in one vectorized pass, then `set_tensor`, `invoke` and `get_tensor`
    one sample at a time, and the outputs dequantized at the end."""
    inp = runner.get_input_details()[0]
    out = runner.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    q = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype("int8")
    raw = []
    for index in range(len(q)):
        runner.set_tensor(inp["index"], q[index : index + 1])
        runner.invoke()
        raw.append(runner.get_tensor(out["index"]))
    return (np.concatenate(raw).astype("float32") - out_zero) * out_scale


def _one_sample_loop_quantizing(runner, x):
    """The same loop quantizing and dequantizing each sample in turn (a
    weaker baseline: numpy's per-call overhead on one sample, not the
    invokes, then makes up much of its time)."""
    inp = runner.get_input_details()[0]
    out = runner.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]
    outputs = []
    for sample in x:
        q = np.round(sample[None] / in_scale + in_zero)
        runner.set_tensor(inp["index"], np.clip(q, -128, 127).astype("int8"))
        runner.invoke()
        raw = runner.get_tensor(out["index"]).astype("float32")
        outputs.append((raw - out_zero) * out_scale)
    return np.concatenate(outputs)


def section_batched(config, workdir):
    """`LiteRTModel.predict` vs a one-sample invoke loop on an int8
    artifact (same samples, same thread count, same outputs), in
    interleaved rounds, wall-clock and process CPU time."""
    from ai_edge_litert.interpreter import Interpreter

    import keras_tflq

    model, shape = build_float_model(config["model"])
    counts = config["samples"]
    counts = sorted(counts) if isinstance(counts, list) else [counts]
    x_all = _inputs(shape, max(counts))
    path = os.path.join(workdir, "batched.tflite")
    _export(model, path, "int8", x_all[:32])
    batch_size = config["batch_size"]
    runs = []
    max_difference = 0.0
    for threads in config.get("threads") or [None]:
        lite = keras_tflq.LiteRTModel(model_path=path, num_threads=threads)
        runner = Interpreter(model_path=path, num_threads=threads)
        runner.allocate_tensors()
        for count in counts:
            x = x_all[:count]
            batched = lite.predict(x, batch_size=batch_size)  # warm-up
            loops = {
                "loop": _one_sample_loop,
                "loop_quantizing": _one_sample_loop_quantizing,
            }
            for loop in loops.values():
                max_difference = max(
                    max_difference,
                    float(np.max(np.abs(batched - loop(runner, x)))),
                )
            order = ["batched", *loops]
            wall = {key: [] for key in order}
            cpu = {key: [] for key in order}
            for index in range(config.get("rounds", 3)):
                for key in order if index % 2 == 0 else order[::-1]:
                    started = time.perf_counter()
                    cpu_started = time.process_time()
                    if key == "batched":
                        lite.predict(x, batch_size=batch_size)
                    else:
                        loops[key](runner, x)
                    wall[key].append(time.perf_counter() - started)
                    cpu[key].append(time.process_time() - cpu_started)
            med = {k: statistics.median(v) for k, v in wall.items()}
            cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
            runs.append(
                {
                    "samples": count,
                    "threads": threads,
                    "batched_s": round(med["batched"], 4),
                    "loop_s": round(med["loop"], 4),
                    "loop_quantizing_s": round(med["loop_quantizing"], 4),
                    "speedup": round(med["loop"] / med["batched"], 2),
                    "cpu_speedup": round(
                        cpu_med["loop"] / max(cpu_med["batched"], 1e-9), 2
                    ),
                    "speedup_quantizing": round(
                        med["loop_quantizing"] / med["batched"], 2
                    ),
                }
            )
            log(f"batched {runs[-1]}")
    # The target row: the most samples with the most threads (the same
    # thread count for both paths).
    main = runs[-1]
    return {
        "model": config["model"],
        "samples": main["samples"],
        "threads": main["threads"],
        "batch_size": batch_size,
        "batched_s": main["batched_s"],
        "loop_s": main["loop_s"],
        "speedup": main["speedup"],
        "cpu_speedup": main["cpu_speedup"],
        "loop_quantizing_s": main["loop_quantizing_s"],
        "speedup_quantizing": main["speedup_quantizing"],
        "runs": runs,
        "max_abs_difference": max_difference,
    }


# ----------------------------------------------------------------- targets


def targets(result):
    """Each target as {value, limit, met, note}."""
    rows = {}
    artifacts = result.get("artifacts") or {}
    for name, modes in artifacts.items():
        base = modes.get("float32")
        for int8 in ("ptq_int8", "qat_int8"):
            if base and int8 in modes:
                rows[f"{name} {int8} size / float32"] = (
                    modes[int8]["bytes"] / base["bytes"],
                    TARGETS["int8_size_vs_float32"]
                    if name == "mobilenetv2_224"
                    else None,
                )
        for threads in (base or {}).get("latency_ms", {}):
            if "qat_int8" in modes and "ptq_int8" in modes:
                # Paired rounds; the target on CPU time, which other
                # processes' load does not inflate (wall time for info).
                qat = modes["qat_int8"]
                paired = qat.get("vs_ptq_int8", {}).get(threads)
                rows[f"{name} QAT int8 / PTQ int8 latency, {threads}T"] = (
                    paired["median"]
                    if paired
                    else qat["latency_ms"][threads]
                    / modes["ptq_int8"]["latency_ms"][threads],
                    None,
                )
                paired_cpu = qat.get("vs_ptq_int8_cpu", {}).get(threads)
                if paired_cpu:
                    rows[
                        f"{name} QAT int8 / PTQ int8 latency in CPU time, "
                        f"{threads}T"
                    ] = (
                        paired_cpu["median"],
                        TARGETS["qat_int8_vs_ptq_int8_latency"],
                    )
            for int8 in ("ptq_int8", "qat_int8"):
                if int8 in modes:
                    rows[f"{name} {int8} / float32 latency, {threads}T"] = (
                        modes[int8]["latency_ms"][threads]
                        / base["latency_ms"][threads],
                        TARGETS["int8_vs_float32_latency"]
                        if name == "mobilenetv2_224"
                        else None,
                    )
    batched = result.get("batched")
    if batched:
        rows["batched evaluation / one-sample loop (speed-up)"] = (
            batched["speedup"],
            -TARGETS["batched_speedup"],
        )
        if "cpu_speedup" in batched:
            rows[
                "batched evaluation / one-sample loop in CPU time (speed-up)"
            ] = (batched["cpu_speedup"], -TARGETS["batched_speedup"])
        if "speedup_quantizing" in batched:
            rows[
                "batched evaluation / one-sample loop quantizing each sample "
                "(speed-up)"
            ] = (batched["speedup_quantizing"], None)
    step = result.get("step_time") or {}
    for framework in ("keras_tflq", "tfmot"):
        for name, mode in (step.get(f"{framework}_fastest") or {}).items():
            if mode:
                row = step[framework][f"{name}/{mode}"]
                limit = (
                    TARGETS["qat_step_overhead"]
                    if framework == "keras_tflq"
                    else None
                )
                rows[f"{framework} QAT step / float step, {name} ({mode})"] = (
                    row["overhead"],
                    limit,
                )
                if "cpu_overhead" in row:
                    rows[
                        f"{framework} QAT step / float step in CPU time, "
                        f"{name} ({mode})"
                    ] = (row["cpu_overhead"], limit)
    checked = {}
    for label, (value, limit) in rows.items():
        met = None
        if limit is not None:
            # A negative limit is a lower bound.
            met = value >= -limit if limit < 0 else value <= limit
        checked[label] = {
            "value": round(value, 3),
            "limit": None if limit is None else abs(limit),
            "bound": None if limit is None else ("min" if limit < 0 else "max"),
            "met": met,
        }
    return checked


# ---------------------------------------------------------------- markdown


def _cell(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


_BYTE_COLUMNS = (
    "weights",
    "biases",
    "weight_quantization",
    "bias_quantization",
    "activation_quantization",
    "tensor_names",
    "metadata",
    "signatures",
    "other_constants",
    "structure",
)


def _artifact_structure_lines(artifacts):
    """Byte breakdown of the integer artifacts, QAT vs PTQ op counts and
    their paired latency ratio."""
    lines = [
        "Bytes by category (`byte_breakdown` of `runtime/inspection.py`;"
        " quantization = float32 scales + int64 zero points, per channel for"
        " kernels and biases; structure = tables, shapes, op options,"
        " padding):",
        "",
        "| model | artifact | " + " | ".join(_BYTE_COLUMNS) + " |",
        "|---|---|" + "---:|" * len(_BYTE_COLUMNS),
    ]
    for name, modes in artifacts.items():
        for mode, row in modes.items():
            counts = row.get("byte_breakdown")
            if counts and mode in ("float32", "ptq_int8", "qat_int8"):
                lines.append(
                    f"| {name} | {mode} | "
                    + " | ".join(f"{counts[c]:,}" for c in _BYTE_COLUMNS)
                    + " |"
                )
    lines.append("")
    for name, modes in artifacts.items():
        ptq, qat = modes.get("ptq_int8"), modes.get("qat_int8")
        if not (ptq and qat and "op_counts" in ptq):
            continue
        same = ptq["op_counts"] == qat["op_counts"]
        ops = ", ".join(f"{k} {v}" for k, v in qat["op_counts"].items())
        lines.append(
            f"- {name}: QAT int8 ops "
            + ("= PTQ int8 ops" if same else f"!= PTQ {ptq['op_counts']}")
            + f" ({ops})."
        )
        for threads, spread in (qat.get("vs_ptq_int8_cpu") or {}).items():
            wall = qat["vs_ptq_int8"][threads]
            lines.append(
                f"  QAT / PTQ latency, {threads} thread(s), paired rounds, "
                f"CPU time: {spread['median']:.3f} [IQR "
                f"{spread['iqr'][0]:.3f}-{spread['iqr'][1]:.3f}], halves "
                f"{spread['halves'][0]:.3f} / {spread['halves'][1]:.3f}; "
                f"wall: {wall['median']:.3f} [IQR {wall['iqr'][0]:.3f}-"
                f"{wall['iqr'][1]:.3f}]; CPU ms PTQ "
                f"{_cell(ptq.get('latency_cpu_ms', {}).get(threads))}, QAT "
                f"{_cell(qat.get('latency_cpu_ms', {}).get(threads))}."
            )
    lines.append("")
    return lines


def _step_time_lines(step):
    """The step-time table: per framework, model and mode, the QAT / float
    ratio of the quiet pairs in process CPU time (the one to read on a
    busy machine) with its spread, each run's value and the ratio of all
    pairs, then the wall-clock ratio."""
    lines = [
        "QAT step time over float step time (`bench/qat_step_time.py`), "
        "float and QAT steps alternating step by step in one process "
        "(`train_function` calls, one intra-op thread): the median of the "
        "QAT / float ratios in process CPU time of the quiet pairs (the "
        "quarter of the pairs with the shortest total time, those other "
        "work slowed the least), [their interquartile range], each run's "
        "value (the runs agree when they differ by at most 0.05), the "
        "median ratio of all pairs; then the quiet-pair ratio in wall "
        "time; float / QAT median CPU ms per step:",
        "",
        "| framework | model | mode | CPU QAT / float | IQR | runs | agree "
        "| all pairs | wall QAT / float | float CPU ms | QAT CPU ms |",
        "|---|---|---|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for framework in ("keras_tflq", "tfmot"):
        for key, row in (step.get(framework) or {}).items():
            name, mode = key.split("/")
            if "error" in row:
                lines.append(
                    f"| {framework} | {name} | {mode} | "
                    f"failed: {row['error'][:80]} | | | | | | | |"
                )
                continue
            fastest = step[f"{framework}_fastest"].get(name) == mode
            runs = [run["cpu_overhead"] for run in row.get("runs", ())]
            agree = {True: "yes", False: "**no**", None: "-"}[
                row.get("runs_agree")
            ]
            lines.append(
                f"| {framework} | {name} | {mode}"
                f"{' (fastest)' if fastest else ''} | "
                f"{_cell(row.get('cpu_overhead'))} | "
                f"{row.get('cpu_overhead_iqr', '')} | "
                f"{', '.join(f'{value:.2f}' for value in runs)} | {agree} | "
                f"{_cell(row.get('cpu_overhead_all_pairs'))} | "
                f"{row['overhead']:.2f} | "
                f"{_cell(row.get('float_step_cpu_ms'), 1)} | "
                f"{_cell(row.get('qat_step_cpu_ms'), 1)} |"
            )
    lines.append("")
    return lines


def _profile_lines(profile):
    """Where a QAT step's time goes: op counts of the traced steps, then
    per model the op types ranked by the self time QAT adds per step."""
    lines = [
        "One QAT step against one float step (keras_tflq, graph mode, "
        "the two models of the first run's timed pairs and their thread "
        "pools, `tf.profiler` over interleaved `fit()`s): ops in the traced "
        "step, ops run per step, process CPU ms per step and the part of "
        "it in op kernels (self time; the rest is the executor's per-op "
        "scheduling and dispatch, and Python), then the op types ranked by "
        "the self time (us per step) QAT adds:",
        "",
        "| model | step | ops traced | ops run | CPU ms | in op kernels ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, row in profile.items():
        for label in ("float", "qat"):
            step = row[label]
            lines.append(
                f"| {name} | {'QAT' if label == 'qat' else 'float'} | "
                f"{step['ops']} | {step.get('ops_run', '-')} | "
                f"{step['cpu_ms']:.1f} | {step['op_self_ms']:.1f} |"
            )
    lines.append("")
    for name, row in profile.items():
        lines += [
            f"| {name}: op type | float us | QAT us | added us | "
            "float runs | QAT runs |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for op in row["op_types"]:
            lines.append(
                f"| {op['op']} | {op['float_us']:.0f} | {op['qat_us']:.0f} "
                f"| {op['qat_us'] - op['float_us']:.0f} | "
                f"{op['float_runs']:.1f} | {op['qat_runs']:.1f} |"
            )
        lines.append("")
    return lines


def markdown(result):
    machine = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines = [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), "
        f"load average {machine['load_before']} before / "
        f"{machine['load_after']} after; {versions}. "
        f"Configuration: `{result['configuration']}`, "
        f"{result['threads']} TensorFlow threads, wall {result['wall_s']} s.",
        "",
    ]
    if result.get("targets"):
        lines += [
            "| target (ratio) | value | limit | met |",
            "|---|---:|---:|---|",
        ]
        for label, row in result["targets"].items():
            limit = (
                "-"
                if row["limit"] is None
                else ("<= " if row["bound"] == "max" else ">= ")
                + f"{row['limit']:g}"
            )
            met = {True: "yes", False: "**no**", None: "(info)"}[row["met"]]
            lines.append(f"| {label} | {row['value']:.3f} | {limit} | {met} |")
        lines.append("")
    if result.get("export"):
        lines += [
            "Export time, `TFLiteExport` vs a hand-written converter call "
            "(median s; ratio: median of paired ratios, min-max):",
            "",
            "| model | mode | callback s | hand-written s | ratio |",
            "|---|---|---:|---:|---:|",
        ]
        for row in result["export"]:
            lines.append(
                f"| {row['model']} | {row['mode']} | "
                f"{row['callback_s_median']:.2f} | "
                f"{row['hand_written_s_median']:.2f} | "
                f"{row['ratio_paired_median']:.2f} "
                f"({row['ratio_paired_min']:.2f}-{row['ratio_paired_max']:.2f})"
                " |"
            )
        lines.append("")
    step = result.get("step_time")
    if step:
        lines += _step_time_lines(step)
        if step.get("profile"):
            lines += _profile_lines(step["profile"])
    qat = result.get("qat_accuracy")
    if qat:
        lines += [
            "QAT vs tfmot on the digits "
            f"({qat.get('protocol', {}).get('seeds', '?')} seed(s)): see "
            "`bench/qat_vs_tfmot.py` for the protocol.",
            "",
            "| metric | keras_tflq | tfmot |",
            "|---|---:|---:|",
        ]
        for label, key in (
            ("int8 TFLite test accuracy", "tflite_int8_acc"),
            ("float fine-tune accuracy (control)", "float_finetune_acc"),
        ):
            summary = qat.get("summary") or {}
            values = [
                (summary.get(framework) or {}).get(key, {}).get("mean")
                for framework in ("keras_tflq", "tfmot")
            ]
            lines.append(
                f"| {label} | {_cell(values[0], 4)} | {_cell(values[1], 4)} |"
            )
        lines.append("")
    artifacts = result.get("artifacts")
    if artifacts:
        threads = sorted(
            {t for m in artifacts.values() for r in m.values()
             for t in r["latency_ms"]}
        )
        lines += [
            "Artifacts: size and LiteRT latency (batch 1, XNNPACK, median "
            "ms per invoke):",
            "",
            "| model | artifact | bytes | size / float32 | "
            + " | ".join(f"{t} thread(s) ms" for t in threads)
            + " |",
            "|---|---|---:|---:|" + "---:|" * len(threads),
        ]
        for name, modes in artifacts.items():
            base = modes.get("float32", {}).get("bytes")
            for mode, row in modes.items():
                ratio = row["bytes"] / base if base else None
                lines.append(
                    f"| {name} | {mode} | {row['bytes']:,} | "
                    f"{_cell(ratio, 3)} | "
                    + " | ".join(
                        _cell(row["latency_ms"].get(t), 2) for t in threads
                    )
                    + " |"
                )
        lines.append("")
        lines += _artifact_structure_lines(artifacts)
    batched = result.get("batched")
    if batched:
        lines += [
            "Batched evaluation: `LiteRTModel.predict` (batch "
            f"{batched['batch_size']}) vs a one-sample invoke loop on "
            f"{batched['model']} (int8; the same thread count for both; "
            "median of interleaved rounds; outputs differ by at most "
            f"{batched['max_abs_difference']:.2g}):",
            "",
            "| samples | threads | batched s | loop s | speed-up | "
            "CPU-time speed-up | quantizing loop s | speed-up |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for run in batched.get("runs") or [batched]:
            lines.append(
                f"| {run['samples']} | {run.get('threads')} | "
                f"{run['batched_s']:.4f} | {run['loop_s']:.4f} | "
                f"{run['speedup']:.2f} | {_cell(run.get('cpu_speedup'))} | "
                f"{_cell(run.get('loop_quantizing_s'), 4)} | "
                f"{_cell(run.get('speedup_quantizing'))} |"
            )
        lines += [
            "",
            "The loop quantizes the whole input in one vectorized pass, then "
            "runs `set_tensor`, `invoke` and `get_tensor` per sample and "
            "dequantizes at the end; the quantizing loop quantizes and "
            "dequantizes each sample in turn.",
        ]
        lines.append("")
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def machine():
    import _report

    info = _report.machine_info()
    try:
        from importlib.metadata import version

        info["versions"]["tfmot"] = version("tensorflow-model-optimization")
        info["versions"]["tf_keras"] = version("tf-keras")
    except Exception:  # noqa: BLE001 - optional
        pass
    info["platform"] = platform.platform()
    return info


def fix_threads(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run(config, partial_path=None):
    """Every configured section; after each, the results so far go to
    `partial_path` (if given), so a cut-off run keeps what it measured."""
    started = time.perf_counter()
    load_before = [round(v, 1) for v in os.getloadavg()]
    fix_threads(config["threads"])
    result = {"benchmark": "run"}
    with tempfile.TemporaryDirectory(prefix="bench_run_") as workdir:
        sections = (
            ("export", lambda c: section_export(c, workdir)),
            ("step_time", lambda c: section_step_time(c, config["threads"])),
            ("qat_accuracy", section_qat_accuracy),
            ("artifacts", lambda c: section_artifacts(c, workdir)),
            ("batched", lambda c: section_batched(c, workdir)),
        )
        for name, function in sections:
            section = config.get(name)
            if not section:
                continue
            section_started = time.perf_counter()
            log(f"{name} ...")
            try:
                result[name] = function(section)
            except Exception as error:  # noqa: BLE001 - the table says so
                result[name] = None
                result.setdefault("errors", {})[name] = (
                    f"{type(error).__name__}: {error}"[-1500:]
                )
            log(f"{name}: {time.perf_counter() - section_started:.0f}s")
            if partial_path:
                with open(partial_path, "w") as f:
                    json.dump(result, f)
    result["targets"] = targets(result)
    result["threads"] = config["threads"]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine()
    result["machine"]["load_before"] = load_before
    result["machine"]["load_after"] = [round(v, 1) for v in os.getloadavg()]
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="< 5 min")
    parser.add_argument(
        "--config",
        default=None,
        help="JSON object (or a path to one) merged into the configuration",
    )
    parser.add_argument(
        "--output", default=None, help="also write a markdown results file"
    )
    args = parser.parse_args(argv)
    overrides = {}
    if args.config:
        text = args.config
        if os.path.isfile(text):
            with open(text) as f:
                text = f.read()
        overrides = json.loads(text)
    config = merged(QUICK if args.quick else FULL, overrides)
    result = run(
        config, partial_path=args.output and f"{args.output}.partial.json"
    )
    if args.output and os.path.exists(f"{args.output}.partial.json"):
        os.remove(f"{args.output}.partial.json")
    result["configuration"] = (
        ("quick" if args.quick else "full")
        + (" + overrides" if overrides else "")
    )
    result["config"] = config
    table = markdown(result)
    print(json.dumps(result))
    print()
    print(table)
    if args.output:
        import _report

        _report.write_results(
            args.output, "keras_tflq benchmarks (bench/run.py)", result, table
        )


if __name__ == "__main__":
    main()
