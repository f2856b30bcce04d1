"""Step timing and the tfmot subprocess, shared by the QAT benchmarks."""

import json
import os
import statistics
import subprocess
import sys
import time


def make_step_timer(K, skip_first_epoch):
    """A callback recording each train step's wall time and process CPU
    time (first epoch dropped). CPU time does not count the time other
    processes hold the cores, so on a busy machine it keeps the overhead
    that wall time drowns in waiting."""

    class StepTimer(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self.cpu_times = []
            self._epoch = 0
            self._started = None
            self._cpu_started = None

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self._cpu_started = time.process_time()
            self._started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            seconds = time.perf_counter() - self._started
            cpu_seconds = time.process_time() - self._cpu_started
            if self._epoch > 0 or not skip_first_epoch:
                self.times.append(seconds)
                self.cpu_times.append(cpu_seconds)

        def _kept(self, values):
            return values if skip_first_epoch else values[5:] or values

        def median(self):
            return statistics.median(self._kept(self.times))

        def cpu_median(self):
            return statistics.median(self._kept(self.cpu_times))

    return StepTimer()


def interleaved_step_times(K, float_model, qat_model, x, y, rounds, batch_size):
    """Float and QAT step times in alternating one-epoch fits.

    Runs after training or a warm-up (tracing is not timed). Returns
    the median float and QAT step ms and the median over rounds of each
    round's QAT / float ratio, in wall time and in process CPU time.
    """
    float_ms, qat_ms, ratios, cpu_ratios = [], [], [], []
    for round_index in range(rounds):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        medians, cpu = [None, None], [None, None]
        for which in order:
            timer = make_step_timer(K, skip_first_epoch=False)
            model = (float_model, qat_model)[which]
            model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=1,
                callbacks=[timer],
                verbose=0,
            )
            medians[which] = timer.median()
            cpu[which] = timer.cpu_median()
        float_ms.append(medians[0] * 1e3)
        qat_ms.append(medians[1] * 1e3)
        ratios.append(medians[1] / medians[0])
        if cpu[0] > 0:
            cpu_ratios.append(cpu[1] / cpu[0])
    return {
        "timed_float_step_ms": statistics.median(float_ms),
        "timed_qat_step_ms": statistics.median(qat_ms),
        "timed_overhead": statistics.median(ratios),
        "timed_overhead_rounds": [round(r, 3) for r in ratios],
        "timed_cpu_overhead": (
            statistics.median(cpu_ratios) if cpu_ratios else None
        ),
    }


def run_tfmot_worker(script, argument):
    """Runs `script --tfmot-worker argument` with `TF_USE_LEGACY_KERAS=1`
    (tfmot switches the process to legacy Keras) and returns the JSON it
    prints after `TFMOT_RESULT `."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(script), "--tfmot-worker", argument],
        env=env, capture_output=True, text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("TFMOT_RESULT "):
            return json.loads(line[len("TFMOT_RESULT "):])
    raise RuntimeError(
        f"tfmot worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    )
