"""TFLiteExport and QAT under tf.distribute.MirroredStrategy (2 logical CPUs).

Each run is a subprocess: logical devices must be configured before
TensorFlow initializes its devices.
"""

import numpy as np
import pytest

from tests.callbacks.distributed_runs import run_modes

# Activation ranges and BatchNormalization statistics of a 2-replica run
# agree with those of a 1-device run over the same global batches to float
# rounding (measured: at most 1.5e-6 apart).
RTOL, ATOL = 1e-5, 1e-5


def _statistics(variables):
    return {
        path: np.asarray(value)
        for path, value in variables.items()
        if path.endswith(("output0_min", "output0_max"))
        or "moving_" in path
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    # One process: a 1-device run, then a 2-replica run.
    results, out = run_modes(
        tmp_path_factory.mktemp("distribute"), ("single", "mirrored")
    )
    return {**results, "out": out}


def test_mirrored_run_trains_and_exports_full_int8(runs):
    mirrored = runs["mirrored"]
    assert "error" not in mirrored
    assert mirrored["replicas"] == 2 and mirrored["chief"]
    assert mirrored["report"]["all_integer"]
    # Twelve steps from scratch: well above chance (0.1), and as on 1 device.
    accuracy = mirrored["report"]["tflite_metrics"]["accuracy"]
    single = runs["single"]["report"]["tflite_metrics"]["accuracy"]
    assert accuracy > 0.25
    assert abs(accuracy - single) <= 0.02


def test_only_the_artifact_and_its_report_are_written(runs):
    names = sorted(path.name for path in (runs["out"] / "mirrored").iterdir())
    assert names == ["digits_int8.json", "digits_int8.tflite"]


def test_two_replicas_learn_the_ranges_and_statistics_of_one_device(runs):
    single = _statistics(runs["single"]["variables"])
    mirrored = _statistics(runs["mirrored"]["variables"])
    assert len(single) == 8 and single.keys() == mirrored.keys()
    for path, value in single.items():
        np.testing.assert_allclose(
            mirrored[path], value, rtol=RTOL, atol=ATOL, err_msg=path
        )


def test_mirrored_artifact_equals_single_process_export_of_its_weights(runs):
    assert runs["mirrored"]["max_output_difference"] == 0.0
