"""Regression tests for the conversion defects found in review (issue 8)."""

import os
import stat

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_tflq  # noqa: E402
from keras_tflq.conversion.artifact import write_atomic  # noqa: E402
from keras_tflq.conversion.converter import convert_and_inspect  # noqa: E402


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_what_open_gets_under_the_umask(
    tmp_path, umask, mode
):
    previous = os.umask(umask)
    try:
        write_atomic(str(tmp_path / "a.tflite"), b"bytes")
        with open(tmp_path / "b.txt", "w") as handle:
            handle.write("text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "a.tflite").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == mode


def _dense_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="features")
    return keras.Model(inputs, keras.layers.Dense(3)(inputs), name="dense")


def test_converter_output_goes_to_the_report_not_the_console(
    tmp_path, capfd
):
    x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
    capfd.readouterr()
    report = keras_tflq.export_tflite(
        _dense_model(), tmp_path / "m.tflite", calibration_data=x
    )
    printed = capfd.readouterr()
    assert "fully_quantize" not in printed.out + printed.err
    assert "fully_quantize" in report["converter_log"]


class _SingularValues(keras.layers.Layer):
    def call(self, inputs):
        return keras.ops.svd(inputs, compute_uv=False)


def test_converter_output_is_kept_in_the_error_on_failure():
    # An SVD has no TFLite builtin (it needs Flex ops): the converter
    # raises (in process here) and prints its diagnostics from C++. (A
    # dynamic-batch LSTM, used before, now converts through the
    # sequence-export route.)
    model = keras.Sequential(
        [keras.Input((4, 4)), _SingularValues()], name="svd_model"
    )
    with pytest.raises(
        keras_tflq.ConversionError,
        match=r"rejected model 'svd_model' in mode='float32'.*Svd",
    ) as caught:
        convert_and_inspect(model, "float32", isolate=False)
    assert caught.value.converter_log
    assert "\nConverter output:\n" in str(caught.value)
