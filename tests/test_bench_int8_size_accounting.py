"""`bench/int8_size_accounting.py` on a tiny conv model: the categories add
up, the zero points are int64 beside float32 scales, and the floor is what
no standard int8 file can drop."""

import pathlib
import sys

import keras

import keras_tflq

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"


def _tiny_conv():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(6, 3, activation="relu"),
            keras.layers.DepthwiseConv2D(3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )


def test_accounting_of_a_per_channel_int8_artifact(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import int8_size_accounting
    finally:
        sys.path.remove(str(BENCH))
    model = _tiny_conv()
    x = keras.random.uniform((8, 8, 8, 3), seed=0).numpy()
    paths = {}
    for mode in ("float32", "int8"):
        paths[mode] = str(tmp_path / f"{mode}.tflite")
        keras_tflq.export_tflite(
            model, paths[mode], mode=mode, calibration_data=x
        )
    result = int8_size_accounting.summarize(paths)
    int8 = result["artifacts"]["int8"]
    counts = int8["breakdown"]
    quantization = (
        counts["weight_quantization"]
        + counts["bias_quantization"]
        + counts["activation_quantization"]
    )
    assert int8["scale_bytes"] + int8["zero_point_bytes"] == quantization
    # One int64 zero point beside each float32 scale.
    assert int8["zero_point_bytes"] == 2 * int8["scale_bytes"]
    assert int8["floor_bytes"] == (
        counts["weights"] + counts["biases"] + quantization
    )
    assert int8["floor_bytes"] < int8["bytes"]
    # Per channel: a scale and a zero point for the kernel and the bias.
    conv = int8["per_op"]["CONV_2D"]
    assert conv == {
        "ops": 1,
        "kernel_bytes": 3 * 3 * 3 * 6,
        "output_channels": 6,
        "quantization_bytes": 2 * 6 * (4 + 8),
    }
    assert int8["per_op"]["DEPTHWISE_CONV_2D"]["output_channels"] == 6
    float32 = result["artifacts"]["float32"]
    assert float32["ratio"] == 1.0 and float32["zero_point_bytes"] == 0
    assert int8["ratio"] == round(int8["bytes"] / float32["bytes"], 4)
    table = int8_size_accounting.markdown(result)
    assert "| int8 | CONV_2D | 1 | 6 | 162 | 144 |" in table
