"""TFLiteExport and QAT under MultiWorkerMirroredStrategy: two worker
processes on 127.0.0.1.

Not part of the default suite (two TensorFlow processes training in
lockstep take minutes on a small machine): `.ci/distributed.sh` runs it.
"""

import numpy as np

from tests.callbacks.distributed_runs import run_multi_worker


def test_two_workers_train_and_only_the_chief_writes(tmp_path):
    (chief_code, chief, chief_out, log), (code, worker, worker_out, _) = (
        run_multi_worker(tmp_path)
    )
    assert (chief_code, code) == (0, 0), log[-3000:]
    assert "error" not in chief and "error" not in worker, chief.get("error")
    assert (chief["chief"], worker["chief"]) == (True, False)
    assert chief["replicas"] == worker["replicas"] == 2
    assert sorted(p.name for p in chief_out.iterdir()) == [
        "digits_int8.json",
        "digits_int8.tflite",
    ]
    assert list(worker_out.iterdir()) == []
    assert chief["report"]["all_integer"] and worker["report"] is None
    # Every worker holds the same ranges and statistics after training.
    for path, value in chief["variables"].items():
        np.testing.assert_array_equal(worker["variables"][path], value)
    # The artifact is what a single process exports from the same weights.
    assert chief["max_output_difference"] == 0.0


def test_no_worker_hangs_when_the_chief_export_fails(tmp_path):
    runs = run_multi_worker(tmp_path, KERAS_TFLQ_TEST_FAIL_EXPORT="1")
    (_, chief, chief_out, log), (_, worker, worker_out, _) = runs
    assert chief is not None and worker is not None, log[-3000:]
    assert chief["error"].startswith(
        "ConversionError: simulated converter failure. The trained model "
        "was saved to"
    )
    assert worker["error"] == (
        "RuntimeError: TFLiteExport stopped this worker: the chief's export "
        "at epoch 2 failed (its error is in the chief's output). The other "
        "workers stop too, instead of waiting for the chief at the next "
        "training step."
    )
    assert sorted(p.name for p in chief_out.iterdir()) == ["digits_int8.keras"]
    assert list(worker_out.iterdir()) == []
