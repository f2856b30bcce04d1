"""A QAT int8 artifact has the op structure of the PTQ int8 artifact of the
same float model: no quantize/dequantize ops of its own, every BatchNorm
folded, every ReLU6 fused."""

import keras
import numpy as np
from qat_helpers import interpreter

import keras_tflq as tflq

L = keras.layers


def _inverted_residual_model():
    """A MobileNetV2 stem and one inverted residual block, tiny."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    shortcut = x
    x = L.Conv2D(24, 1, use_bias=False, name="expand")(x)
    x = L.BatchNormalization(name="expand_bn")(x)
    x = L.ReLU(6.0, name="expand_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.Conv2D(8, 1, use_bias=False, name="project")(x)
    x = L.BatchNormalization(name="project_bn")(x)
    x = L.Add(name="add")([shortcut, x])
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def _per_channel_kernels(content):
    """{op name: per-channel?} for the kernel of each convolution."""
    runner = interpreter(content)
    tensors = {t["index"]: t for t in runner.get_tensor_details()}
    kernels = {}
    for op in runner._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            scales = tensors[op["inputs"][1]]["quantization_parameters"]
            kernels[op["index"]] = len(scales["scales"]) > 1
    return kernels


def test_qat_int8_artifact_has_the_ops_of_the_ptq_int8_artifact(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (16, 8, 8, 3)).astype("float32")
    float_model = _inverted_residual_model()
    # BatchNorm statistics as after training (not the initial 0 and 1), so
    # the folded biases are not all zero.
    for layer in float_model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape).astype("float32")
                    for w in layer.get_weights()
                ]
            )
    qat_model = tflq.quantize_model(float_model)

    ptq_path, qat_path = tmp_path / "ptq.tflite", tmp_path / "qat.tflite"
    tflq.export_tflite(
        float_model, ptq_path, mode="int8", calibration_data=x
    )
    tflq.export_tflite(qat_model, qat_path, mode="int8")
    ptq = tflq.inspect_tflite(ptq_path)
    qat = tflq.inspect_tflite(qat_path)

    assert qat["op_counts"] == ptq["op_counts"]
    assert ptq["op_counts"]["CONV_2D"] == 3  # every BatchNorm folded
    assert "RELU6" not in qat["op_counts"]  # fused into the convolutions
    assert qat["all_integer"] and qat["float_ops"] == []
    # At most the float input's QUANTIZE and the output's DEQUANTIZE.
    runner = interpreter(qat_path.read_bytes())
    graph_input = runner.get_input_details()[0]["index"]
    for op in runner._get_ops_details():
        if op["op_name"] == "QUANTIZE":
            assert list(op["inputs"]) == [graph_input]
    assert qat["op_counts"].get("QUANTIZE", 0) <= 1
    assert qat["op_counts"].get("DEQUANTIZE", 0) <= 1
    assert _per_channel_kernels(qat_path.read_bytes()) == (
        _per_channel_kernels(ptq_path.read_bytes())
    )
