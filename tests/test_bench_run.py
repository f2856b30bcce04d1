"""`bench/run.py --quick` on a tiny configuration: every section runs and
the JSON line and the markdown table carry the results."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every section, each as small as it goes; the tfmot subprocesses (seconds
# of imports each) are left to the real runs.
TINY = {
    "threads": 1,
    "export": {"models": ["tiny_cnn"], "reps": 1, "modes": ["float32"]},
    "qat_accuracy": None,
    "step_time": {
        "models": ["tiny_cnn"],
        "modes": ["graph"],
        "frameworks": ["keras_tflq"],
        "rounds": 2,
        "steps": {"tiny_cnn": 3},
        "profile": ["tiny_cnn"],
        "profile_steps": 2,
    },
    "artifacts": {
        "models": ["tiny_cnn"],
        "threads": [1],
        "rounds": 1,
        "invokes": 2,
        "calibration_samples": 4,
        "qat_steps": 1,
    },
    "batched": {"model": "tiny_cnn", "samples": 64, "batch_size": 32},
}


def test_quick_run_on_a_tiny_configuration(tmp_path):
    output = tmp_path / "run.md"
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--config",
            json.dumps(TINY),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, _, table = proc.stdout.partition("\n")
    result = json.loads(first)
    assert "errors" not in result, result["errors"]
    assert result["config"]["export"]["models"] == ["tiny_cnn"]
    assert result["machine"]["nproc"] == os.cpu_count()
    assert [row["mode"] for row in result["export"]] == ["float32"]
    step = result["step_time"]["keras_tflq"]["tiny_cnn/graph"]
    # Three pairs of steps per round, two rounds, alternating step by
    # step: the quiet-pair median within its IQR, beside all pairs'.
    assert len(step["overhead_rounds"]) == 2
    low, high = step["cpu_overhead_iqr"]
    assert low <= step["cpu_overhead"] <= high
    assert step["cpu_overhead_all_pairs"] > 0
    assert step["qat_step_ms"] > 0 and step["float_step_ms"] > 0
    # Profiled on the models of the timed pairs.
    profile = result["step_time"]["profile"]["tiny_cnn"]
    assert profile["qat"]["ops"] > profile["float"]["ops"]
    assert profile["qat"]["ops_run"] > profile["float"]["ops_run"] > 0
    artifacts = result["artifacts"]["tiny_cnn"]
    assert list(artifacts) == [
        "float32",
        "float16",
        "dynamic",
        "ptq_int8",
        "qat_int8",
    ]
    assert all(row["bytes"] > 0 for row in artifacts.values())
    assert all(row["latency_ms"]["1"] > 0 for row in artifacts.values())
    # QAT against PTQ latency: paired rounds, the target on CPU time.
    latency = result["targets"][
        "tiny_cnn QAT int8 / PTQ int8 latency in CPU time, 1T"
    ]
    assert latency["limit"] == 1.0 and latency["bound"] == "max"
    assert latency["value"] > 0
    wall = result["targets"]["tiny_cnn QAT int8 / PTQ int8 latency, 1T"]
    assert wall["limit"] is None and wall["value"] > 0
    assert result["batched"]["samples"] == 64
    assert result["batched"]["max_abs_difference"] < 1e-6
    target = result["targets"]["batched evaluation / one-sample loop "
                                "(speed-up)"]
    assert target["limit"] == 5.0 and target["bound"] == "min"
    # The table names the machine and every section; the file holds both.
    assert table.strip().startswith("Machine: ")
    for heading in (
        "| target (ratio) |",
        "| model | mode | callback s |",
        "| framework | model | mode |",
        "| model | step | ops traced | ops run |",
        "| model | artifact | bytes |",
        "Batched evaluation:",
    ):
        assert heading in table
    written = output.read_text()
    assert "| model | artifact | bytes |" in written
    assert json.dumps(result) in written


def test_step_time_statistics_of_paired_steps():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import qat_step_time
    finally:
        sys.path.remove(str(ROOT / "bench"))
    # Pair totals 21, 22, 50, 20: the quiet half is pairs 0 and 3, kept
    # in pair order; a fraction below one pair still keeps one.
    float_ms = [10.0, 10.0, 20.0, 10.0]
    qat_ms = [11.0, 12.0, 30.0, 10.0]
    assert qat_step_time.quiet_ratios(float_ms, qat_ms, 0.5) == [1.1, 1.0]
    assert qat_step_time.quiet_ratios(float_ms, qat_ms, 0.01) == [1.0]
    # Eight pairs in rounds of two: the pairs slowed by other work (long
    # steps, ratio 2) are left out of the quiet median (the quiet quarter
    # is pairs 6 and 0), not of the all-pairs one; each half and each
    # round keeps its own quiet pair.
    float_ms = [10.0, 30.0, 10.0, 30.0, 10.0, 30.0, 10.0, 30.0]
    qat_ms = [12.0, 60.0, 13.0, 60.0, 14.0, 60.0, 11.0, 60.0]
    summary = qat_step_time.paired_overhead(float_ms, qat_ms, 2, "cpu")
    assert summary["cpu"] == 1.15
    assert summary["cpu_iqr"] == [1.125, 1.175]
    assert summary["cpu_all_pairs"] == 1.7
    assert summary["cpu_halves"] == [1.2, 1.1]
    assert summary["cpu_rounds"] == [1.2, 1.3, 1.4, 1.1]
