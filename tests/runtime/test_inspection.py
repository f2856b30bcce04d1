import json

import pytest

from keras_tflq.runtime.inspection import byte_breakdown
from keras_tflq.runtime.inspection import inspect_tflite


@pytest.mark.parametrize(
    "mode_id",
    ["float32", "float16", "dynamic", "int8", "int8_uint8_io", "int16x8"],
)
def test_report_is_json_serialisable_and_sized(tflite_content, mode_id):
    _, content = tflite_content("conv", mode_id)
    report = inspect_tflite(content)
    assert json.loads(json.dumps(report)) == report
    assert report["bytes"] == len(content)
    assert report["op_counts"]["CONV_2D"] == 1
    assert report["op_counts"]["FULLY_CONNECTED"] == 1
    assert sum(report["tensor_dtypes"].values()) > 0


def test_float32_model_computes_in_float(tflite_content):
    _, content = tflite_content("conv", "float32")
    report = inspect_tflite(content)
    assert not report["all_integer"]
    assert report["quantized_ops"] == []
    ops = {op["op"] for op in report["float_ops"]}
    assert {"CONV_2D", "FULLY_CONNECTED"} <= ops
    # Output tensor names carry the Keras layer names.
    conv_op = next(op for op in report["float_ops"] if op["op"] == "CONV_2D")
    assert any("conv" in name for name in conv_op["outputs"])
    assert set(report["tensor_dtypes"]) == {"float32", "int32"}


@pytest.mark.parametrize("mode_id", ["int8", "int8_uint8_io", "int16x8"])
def test_integer_models_have_no_float_ops(tflite_content, mode_id):
    _, content = tflite_content("conv", mode_id)
    report = inspect_tflite(content)
    assert report["all_integer"]
    assert report["float_ops"] == []
    ops = {op["op"] for op in report["quantized_ops"]}
    assert {"CONV_2D", "FULLY_CONNECTED"} <= ops
    assert "float32" not in report["tensor_dtypes"] or mode_id == "int16x8"


def test_int16x8_keeps_float_io_around_int16_activations(tflite_content):
    _, content = tflite_content("dense", "int16x8")
    report = inspect_tflite(content)
    assert report["inputs"][0]["dtype"] == "float32"
    assert report["outputs"][0]["dtype"] == "float32"
    assert report["tensor_dtypes"]["int16"] > 0
    assert (
        report["op_counts"]["QUANTIZE"]
        == report["op_counts"]["DEQUANTIZE"]
        == 1
    )


def test_dynamic_range_model_has_int8_weights_and_float_ops(tflite_content):
    _, content = tflite_content("dense", "dynamic")
    report = inspect_tflite(content)
    assert report["tensor_dtypes"]["int8"] >= 1
    assert not report["all_integer"]
    assert [op["op"] for op in report["float_ops"]] == ["FULLY_CONNECTED"] * 2


def test_io_names_and_quantization(tflite_content):
    _, content = tflite_content("two_inputs", "int8_uint8_io")
    report = inspect_tflite(content)
    assert [t["name"] for t in report["inputs"]] == ["zeta", "alpha"]
    assert [t["name"] for t in report["outputs"]] == ["output_0"]
    zeta = report["inputs"][0]
    assert zeta["tensor_name"] == "serving_default_zeta:0"
    assert zeta["shape"] == [-1, 6]
    assert zeta["dtype"] == "uint8"
    assert len(zeta["quantization"]["scale"]) == 1
    assert len(zeta["quantization"]["zero_point"]) == 1


def test_reads_a_path(tflite_content, tmp_path):
    _, content = tflite_content("dense", "float32")
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    assert inspect_tflite(str(path)) == inspect_tflite(content)
    assert inspect_tflite(path) == inspect_tflite(content)


@pytest.mark.parametrize(
    "value, match",
    [
        ("/no/such.tflite", "model_content_or_path=/no/such.tflite"),
        (42, "Received: model_content_or_path of type int"),
    ],
    ids=["missing_path", "int"],
)
def test_rejects_bad_arguments(value, match):
    with pytest.raises(ValueError, match=match):
        inspect_tflite(value)


def test_byte_breakdown_accounts_for_every_byte(tflite_content):
    # conv: a 3x3x3 -> 4 kernel (108 weights), logits: 144 -> 5 (720).
    _, float_content = tflite_content("conv", "float32")
    _, int8_content = tflite_content("conv", "int8")
    float_bytes = byte_breakdown(float_content)
    int8_bytes = byte_breakdown(int8_content)
    for content, counts in (
        (float_content, float_bytes),
        (int8_content, int8_bytes),
    ):
        parts = {k: v for k, v in counts.items() if k != "constants_by_dtype"}
        assert all(v >= 0 for v in parts.values())
        assert sum(parts.values()) == len(content)
        assert counts["tensor_names"] > 0 and counts["structure"] > 0
    assert float_bytes["weights"] == 4 * (108 + 720)
    assert float_bytes["weight_quantization"] == 0
    assert int8_bytes["weights"] == 108 + 720
    assert int8_bytes["constants_by_dtype"]["int8"] == 108 + 720
    # Per-channel kernels: a float32 scale and an int64 zero point for
    # each of the 4 + 5 output channels.
    assert int8_bytes["weight_quantization"] == (4 + 8) * (4 + 5)
    assert int8_bytes["bias_quantization"] > 0
