"""Benchmark (issue 13): QAT step time over float step time, keras_tflq and
tfmot side by side, in graph mode and under XLA.

Protocol, per framework (tfmot in a `TF_USE_LEGACY_KERAS=1` subprocess),
model and mode (`graph`: `compile(jit_compile=False)`; `xla`:
`jit_compile=True`):

* the process fixes its thread pools first
  (`tf.config.threading.set_intra_op_parallelism_threads(threads)`,
  inter-op 1; default 1 thread: on a shared 2-core machine a second
  intra-op thread mostly waits, and its spinning is CPU time that is not
  work), so both frameworks use the same pools whatever the load;
* a float model and `quantize_model` of the same architecture, Adam,
  random data (the step time does not depend on the values) as a cached,
  repeated `tf.data` pipeline, so no step waits for input;
* one warm-up epoch each (tracing and XLA compilation are not timed);
* `rounds` interleaved rounds (float, QAT, QAT, float, ...), each a one-epoch
  `fit()` of `steps` steps; a callback times every batch
  (`on_train_batch_begin` -> `on_train_batch_end`); per round, the QAT median
  over the float median; the overhead is the median of the round ratios,
  reported with their interquartile range and the medians of the first and
  second half of the rounds (two half-runs: the protocol's repeatability);
* the same per round with the process CPU time of a step
  (`time.process_time`, all threads; the mean over the round) in place of
  wall time: CPU time does not count the time other processes hold the
  cores, so on a busy machine it carries the overhead that wall time
  drowns in waiting.

The whole measurement runs `repeats` times (default 2), the frameworks
taking turns; the rounds of all runs are pooled for the median, and each
run's own ratios are kept: the runs agree when their CPU-time ratios
differ by at most `AGREEMENT` (0.05).

The fastest mode of a framework is the one with the lowest QAT step time
(CPU time per step).

`graph_profile()` counts the ops of one traced float and QAT train step
and traces interleaved float and QAT `fit()`s with `tf.profiler`: the
op types ranked by the self time QAT adds per step.

Usage:
    python bench/qat_step_time.py --quick
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# Per model: input shape, classes, batch size.
MODELS = {
    "digits_cnn": ((8, 8, 1), 10, 32),
    "mobilenetv2_32": ((32, 32, 3), 10, 32),
    "tiny_cnn": ((8, 8, 1), 10, 16),
}

# Runs agree when their CPU-time ratios differ by at most AGREEMENT (the
# issue's +-0.05, read strictly: one run within 0.05 of the other).
AGREEMENT = 0.05

DEFAULTS = {
    "models": ["digits_cnn", "mobilenetv2_32"],
    "modes": ["graph", "xla"],
    "frameworks": ["keras_tflq", "tfmot"],
    # Steps per round per model (a digits step is ~50x shorter).
    "steps": {"digits_cnn": 200, "mobilenetv2_32": 24, "tiny_cnn": 8},
    "rounds": 8,
    "threads": 1,
    "repeats": 2,
    "profile_steps": 20,
}


def fix_threads(threads):
    """Fixed thread pools; must run before TensorFlow runs any op."""
    import tensorflow as tf

    threading = tf.config.threading
    if (
        threading.get_intra_op_parallelism_threads() == threads
        and threading.get_inter_op_parallelism_threads() == 1
    ):
        return
    threading.set_intra_op_parallelism_threads(threads)
    threading.set_inter_op_parallelism_threads(1)


def build(K, name):
    """The float model `name`, built with `keras` or `tf_keras` (`K`)."""
    shape, classes, _ = MODELS[name]
    K.utils.set_random_seed(0)
    if name == "mobilenetv2_32":
        return K.applications.MobileNetV2(
            input_shape=shape, weights=None, classes=classes
        )
    if name == "tiny_cnn":
        L = K.layers
        inputs = K.Input(shape)
        x = L.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        x = L.GlobalAveragePooling2D()(x)
        return K.Model(inputs, L.Dense(classes, activation="softmax")(x))
    # The digits CNN of bench/qat_vs_tfmot.py.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import qat_vs_tfmot

    return qat_vs_tfmot.build_model(K)


def _dataset(tf, name, steps):
    shape, classes, batch = MODELS[name]
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (batch * steps, *shape)).astype("float32")
    y = rng.integers(0, classes, len(x)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    return data.cache().repeat()


def _timer(K):
    class StepTimer(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

            self.cpu_times = []

        def on_train_batch_begin(self, batch, logs=None):
            self._cpu_started = time.process_time()
            self._started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._started)
            self.cpu_times.append(time.process_time() - self._cpu_started)

    return StepTimer()


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _spread(ratios, prefix):
    """Median ratio with its spread and the two half-run medians."""
    low, high = _quartiles(ratios)
    half = max(1, len(ratios) // 2)
    halves = [ratios[:half], ratios[half:] or ratios[:half]]
    return {
        prefix: round(statistics.median(ratios), 3),
        f"{prefix}_iqr": [round(low, 3), round(high, 3)],
        f"{prefix}_halves": [round(statistics.median(h), 3) for h in halves],
        f"{prefix}_rounds": [round(r, 3) for r in ratios],
    }


def summarize(ratios, float_ms, qat_ms, cpu_ratios=None, cpu_ms=None):
    """The wall-time overhead (and the CPU-time one) with their spread."""
    result = {
        "float_step_ms": round(statistics.median(float_ms), 3),
        "qat_step_ms": round(statistics.median(qat_ms), 3),
        **_spread(ratios, "overhead"),
    }
    if cpu_ratios:
        result.update(_spread(cpu_ratios, "cpu_overhead"))
    if cpu_ms:
        for key, values in cpu_ms.items():
            result[key] = round(statistics.median(values), 3)
    return result


def measure(framework, name, mode, steps, rounds):
    """Interleaved float/QAT step times of model `name` in `mode`."""
    import tensorflow as tf

    if framework == "tfmot":
        import tensorflow_model_optimization as tfmot
        import tf_keras as K

        quantize_model = tfmot.quantization.keras.quantize_model
    else:
        import keras as K

        import keras_tflq

        quantize_model = keras_tflq.quantize_model
    data = _dataset(tf, name, steps)
    models = [build(K, name), quantize_model(build(K, name))]
    for model in models:
        model.compile(
            K.optimizers.Adam(1e-3),
            "sparse_categorical_crossentropy",
            jit_compile=mode == "xla",
        )
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    raw = {key: [] for key in RAW_KEYS}
    for index in range(rounds):
        medians, cpu = [None, None], [None, None]
        for which in (0, 1) if index % 2 == 0 else (1, 0):
            timer = _timer(K)
            models[which].fit(
                data,
                steps_per_epoch=steps,
                epochs=1,
                callbacks=[timer],
                verbose=0,
            )
            medians[which] = statistics.median(timer.times) * 1e3
            cpu[which] = statistics.mean(timer.cpu_times) * 1e3
        raw["float_ms"].append(medians[0])
        raw["qat_ms"].append(medians[1])
        raw["float_cpu_ms"].append(cpu[0])
        raw["qat_cpu_ms"].append(cpu[1])
    K.backend.clear_session()
    return raw


# The per-round values `measure()` returns.
RAW_KEYS = ("float_ms", "qat_ms", "float_cpu_ms", "qat_cpu_ms")


def summarize_raw(raw):
    """`summarize()` of the per-round values of `measure()` (of one run,
    or of several runs concatenated in order)."""
    ratios = [
        q / f for f, q in zip(raw["float_ms"], raw["qat_ms"], strict=True)
    ]
    cpu_ratios = [
        q / f
        for f, q in zip(raw["float_cpu_ms"], raw["qat_cpu_ms"], strict=True)
    ]
    return summarize(
        ratios,
        raw["float_ms"],
        raw["qat_ms"],
        cpu_ratios,
        {
            "float_step_cpu_ms": raw["float_cpu_ms"],
            "qat_step_cpu_ms": raw["qat_cpu_ms"],
        },
    )


def _op_self_times(xplane_dir, steps):
    """{op type: (self us per step, ops run per step)} from the trace
    written to `xplane_dir` (TensorFlow's `framework_op_stats` tool)."""
    import glob

    from tensorflow.python.profiler.internal import (
        _pywrap_profiler_plugin as plugin,
    )

    paths = glob.glob(
        os.path.join(xplane_dir, "**", "*.xplane.pb"), recursive=True
    )
    data, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"the trace was not readable: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    self_us = collections.Counter()
    runs = collections.Counter()
    for row in table["rows"]:
        values = (cell.get("v") for cell in row["c"])
        cells = dict(zip(columns, values, strict=True))
        if cells["type"] == "IDLE":
            continue
        self_us[cells["type"]] += cells["total_self_time"] / steps
        runs[cells["type"]] += cells["occurrences"] / steps
    return {op: (self_us[op], runs[op]) for op in self_us}


def _op_counts(keras, tf, model, data):
    """{op type: count} of one traced train step of `model` (the forward
    pass, the gradient and the optimizer update, as `fit()` traces it)."""
    optimizer = model.optimizer
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    x, y = next(iter(data))
    graph = step.get_concrete_function(x, y).graph
    return collections.Counter(op.type for op in graph.get_operations())


def graph_profile(name, steps, rounds=2):
    """Where one QAT step's time goes, against one float step (keras_tflq,
    graph mode, the same `fit()` as `measure()`).

    Counts the ops of each traced train step, then traces `rounds`
    interleaved one-epoch fits of `steps` steps each with
    `tf.profiler` and sums each op type's self time (the time an op runs,
    not counting ops it waits on) per step. Returns the op counts, the
    process CPU ms per step of the traced fits, the ops run and the self
    ms of all ops per step (the CPU time no op accounts for is the
    executor's: scheduling, dispatch, Python), and the op types ranked by
    the time QAT adds.
    """
    import tempfile

    import keras
    import tensorflow as tf

    import keras_tflq

    data = _dataset(tf, name, steps)
    models = {
        "float": build(keras, name),
        "qat": keras_tflq.quantize_model(build(keras, name)),
    }
    result = {}
    for label, model in models.items():
        model.compile(
            keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy"
        )
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        counts = _op_counts(keras, tf, model, data)
        result[label] = {"ops": sum(counts.values()), "op_counts": counts}
    times = {label: collections.Counter() for label in models}
    runs = {label: collections.Counter() for label in models}
    cpu = {label: [] for label in models}
    for index in range(rounds):
        order = list(models) if index % 2 == 0 else list(models)[::-1]
        for label in order:
            with tempfile.TemporaryDirectory(prefix="qat_profile_") as logdir:
                tf.profiler.experimental.start(logdir)
                started = time.process_time()
                models[label].fit(
                    data, steps_per_epoch=steps, epochs=1, verbose=0
                )
                cpu[label].append((time.process_time() - started) / steps)
                tf.profiler.experimental.stop()
                for op, (us, count) in _op_self_times(logdir, steps).items():
                    times[label][op] += us / rounds
                    runs[label][op] += count / rounds
    for label in models:
        result[label]["cpu_ms"] = round(statistics.median(cpu[label]) * 1e3, 3)
        result[label]["op_self_ms"] = round(
            sum(times[label].values()) / 1e3, 3
        )
        result[label]["ops_run"] = round(sum(runs[label].values()), 1)
    types = set(times["float"]) | set(times["qat"])
    ranked = sorted(
        types,
        key=lambda op: times["float"][op] - times["qat"][op],
    )
    result["op_types"] = [
        {
            "op": op,
            "float_us": round(times["float"][op], 1),
            "qat_us": round(times["qat"][op], 1),
            "float_runs": round(runs["float"][op], 1),
            "qat_runs": round(runs["qat"][op], 1),
        }
        for op in ranked[:12]
    ]
    float_counts = result["float"].pop("op_counts")
    qat_counts = result["qat"].pop("op_counts")
    extra = {
        op: count - float_counts.get(op, 0)
        for op, count in qat_counts.items()
        if count > float_counts.get(op, 0)
    }
    result["extra_qat_ops"] = dict(
        sorted(extra.items(), key=lambda item: -item[1])[:12]
    )
    keras.backend.clear_session()
    return result


def steps_of(config, name, mode):
    """Steps per round of model `name` in `mode`: `steps["name/mode"]` if
    set (an XLA step on the CPU is several times longer), else
    `steps[name]`."""
    steps = config["steps"]
    return steps.get(f"{name}/{mode}", steps[name])


def run_framework(framework, config):
    """Every model and mode of `config` in this process: the per-round
    values of `measure()` (or an error) per `model/mode`."""
    fix_threads(config["threads"])
    results = {}
    for name in config["models"]:
        for mode in config["modes"]:
            started = time.perf_counter()
            try:
                row = measure(
                    framework,
                    name,
                    mode,
                    steps_of(config, name, mode),
                    config["rounds"],
                )
            except Exception as error:  # noqa: BLE001 - reported in the table
                row = {"error": f"{type(error).__name__}: {error}"[:300]}
            row["wall_s"] = round(time.perf_counter() - started, 1)
            results[f"{name}/{mode}"] = row
            print(
                f"[qat_step_time] {framework} {name} {mode}: "
                f"{summarize_raw(row) if 'error' not in row else row}",
                file=sys.stderr,
            )
    return results


def pool_runs(runs, tolerance=AGREEMENT):
    """One row per `model/mode` from the runs of one framework: the
    summary of all rounds in run order (so with two runs the "halves" are
    the two runs), each run's own ratios, and whether the runs' CPU-time
    ratios agree within `tolerance`."""
    rows = {}
    for key in runs[0]:
        per_run = [run[key] for run in runs if key in run]
        errors = [row["error"] for row in per_run if "error" in row]
        if errors:
            rows[key] = {"error": errors[0]}
            continue
        pooled = {name: [] for name in RAW_KEYS}
        for row in per_run:
            for name in RAW_KEYS:
                pooled[name].extend(row[name])
        summary = summarize_raw(pooled)
        summary["wall_s"] = round(sum(row["wall_s"] for row in per_run), 1)
        each = [summarize_raw(row) for row in per_run]
        summary["runs"] = [
            {
                "overhead": run["overhead"],
                "cpu_overhead": run["cpu_overhead"],
                "cpu_overhead_iqr": run["cpu_overhead_iqr"],
            }
            for run in each
        ]
        if len(each) > 1:
            values = [run["cpu_overhead"] for run in each]
            summary["runs_cpu_spread"] = round(max(values) - min(values), 3)
            summary["runs_agree"] = max(values) - min(values) <= tolerance
        rows[key] = summary
    return rows


def run_tfmot(config):
    """`run_framework("tfmot", config)` in a tf_keras subprocess."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--tfmot-worker",
            json.dumps(config),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("TFMOT_RESULT "):
            return json.loads(line[len("TFMOT_RESULT ") :])
    raise RuntimeError(
        f"tfmot worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )


def fastest(results, name, modes):
    """The mode with the lowest QAT step time for model `name` (in CPU
    time when measured: wall time on a busy machine ranks the load)."""
    rows = {
        mode: results[f"{name}/{mode}"]
        for mode in modes
        if "qat_step_ms" in results.get(f"{name}/{mode}", {})
    }
    if not rows:
        return None
    return min(
        rows,
        key=lambda mode: rows[mode].get(
            "qat_step_cpu_ms", rows[mode]["qat_step_ms"]
        ),
    )


def run(config):
    """Every framework (keras_tflq here, tfmot in a subprocess),
    `repeats` times in turn, pooled by `pool_runs()`."""
    result = {"config": config}
    runs = {framework: [] for framework in config["frameworks"]}
    for repeat in range(config.get("repeats", 1)):
        # The repeats (which check that runs agree) may measure fewer
        # modes than the first run (`repeat_modes`: the graph mode, the
        # fastest on the CPU, without XLA's long compiles).
        repeat_config = config
        if repeat and config.get("repeat_modes"):
            repeat_config = dict(config, modes=config["repeat_modes"])
        for framework in config["frameworks"]:
            if framework == "tfmot":
                runs[framework].append(run_tfmot(repeat_config))
            else:
                runs[framework].append(
                    run_framework(framework, repeat_config)
                )
    for framework, framework_runs in runs.items():
        result[framework] = pool_runs(framework_runs)
        result[f"{framework}_fastest"] = {
            name: fastest(result[framework], name, config["modes"])
            for name in config["models"]
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 rounds")
    parser.add_argument("--config", default=None, help="JSON overrides")
    parser.add_argument("--tfmot-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tfmot_worker:
        config = json.loads(args.tfmot_worker)
        print("TFMOT_RESULT " + json.dumps(run_framework("tfmot", config)))
        return
    config = dict(DEFAULTS, rounds=4 if args.quick else DEFAULTS["rounds"])
    config.update(json.loads(args.config or "{}"))
    print(json.dumps(run(config)))


if __name__ == "__main__":
    main()
