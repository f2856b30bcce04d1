"""C++ sources for a TFLM firmware: the model array, the resolver, the arena."""

import os
import re
import shutil
import subprocess

import keras
import pytest
import tensorflow as tf

from keras_tflq.conversion.micro_sources import arena_constant
from keras_tflq.conversion.micro_sources import c_names
from keras_tflq.conversion.micro_sources import micro_sources
from keras_tflq.conversion.micro_sources import write_micro_sources
from keras_tflq.runtime.micro import analyze_micro

# The pip package ships no C++ headers. This stand-in for
# tensorflow/lite/micro/micro_mutable_op_resolver.h declares only what the
# generated code uses, with the method names of tflite-micro's real header
# (written out here, not derived from keras_tflq's table, so a wrong name
# fails to compile).
_RESOLVER_STUB = """
#ifndef TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
#define TENSORFLOW_LITE_MICRO_MICRO_MUTABLE_OP_RESOLVER_H_
typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
namespace tflite {
template <unsigned int tOpCount>
class MicroMutableOpResolver {
 public:
  TfLiteStatus AddConv2D() { return kTfLiteOk; }
  TfLiteStatus AddDepthwiseConv2D() { return kTfLiteOk; }
  TfLiteStatus AddFullyConnected() { return kTfLiteOk; }
  TfLiteStatus AddMaxPool2D() { return kTfLiteOk; }
  TfLiteStatus AddAveragePool2D() { return kTfLiteOk; }
  TfLiteStatus AddPack() { return kTfLiteOk; }
  TfLiteStatus AddReshape() { return kTfLiteOk; }
  TfLiteStatus AddShape() { return kTfLiteOk; }
  TfLiteStatus AddStridedSlice() { return kTfLiteOk; }
  TfLiteStatus AddSoftmax() { return kTfLiteOk; }
  TfLiteStatus AddQuantize() { return kTfLiteOk; }
  TfLiteStatus AddDequantize() { return kTfLiteOk; }
};
}  // namespace tflite
#endif
"""


@pytest.fixture(scope="module")
def digits_like_int8():
    """An int8 conv model's artifact and its `micro` report."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="probs")(x))
    samples = keras.random.uniform((16, 8, 8, 1), seed=0).numpy()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    content = converter.convert()
    return content, analyze_micro(content)


def _array_bytes(source):
    body = source[source.index("[] = {") : source.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_model_array_holds_the_artifact_aligned(digits_like_int8):
    content, micro = digits_like_int8
    header, source = micro_sources(content, "digits_int8", micro)
    assert _array_bytes(source) == content
    assert "alignas(16) const unsigned char g_digits_int8_model_data[]" in (
        source
    )
    assert f"g_digits_int8_model_data_size = {len(content)};" in header


def test_resolver_registers_exactly_the_models_ops(digits_like_int8):
    content, micro = digits_like_int8
    header, source = micro_sources(content, "digits_int8", micro)
    registered = re.findall(r"resolver\.(Add\w+)\(\)", source)
    assert registered == micro["ops"]
    assert {"AddConv2D", "AddFullyConnected", "AddSoftmax"} <= set(registered)
    assert f"kDigitsInt8OpCount = {len(micro['ops'])};" in header
    assert "tflite::MicroMutableOpResolver<kDigitsInt8OpCount>" in header


def test_arena_constant_is_the_measured_arena_rounded_to_16(digits_like_int8):
    content, micro = digits_like_int8
    header, _ = micro_sources(content, "digits_int8", micro)
    arena = arena_constant(micro["arena_bytes"])
    assert arena % 16 == 0 and 0 <= arena - micro["arena_bytes"] < 16
    assert f"kDigitsInt8TensorArenaSize = {arena};" in header


@pytest.mark.parametrize(
    "name, array, register",
    [
        (
            "digits_cnn_int8",
            "g_digits_cnn_int8_model_data",
            "RegisterDigitsCnnInt8Ops",
        ),
        ("3-kws.v2", "g_model_3_kws_v2_model_data", "RegisterModel3KwsV2Ops"),
    ],
    ids=["plain", "digits-and-dots"],
)
def test_identifiers_are_valid_cpp(name, array, register):
    names = c_names(name)
    assert names["array"] == array
    assert names["register"] == register
    assert all(re.fullmatch(r"[A-Za-z_]\w*", v) for v in names.values())


@pytest.mark.skipif(
    shutil.which("c++") is None, reason="needs a system C++ compiler"
)
def test_sources_compile_link_and_run(digits_like_int8, tmp_path):
    content, micro = digits_like_int8
    stub = tmp_path / "include/tensorflow/lite/micro"
    stub.mkdir(parents=True)
    (stub / "micro_mutable_op_resolver.h").write_text(_RESOLVER_STUB)
    header, source = write_micro_sources(
        content, micro, str(tmp_path / "firmware"), "digits_int8"
    )
    assert sorted(os.listdir(tmp_path / "firmware")) == [
        "digits_int8.cc",
        "digits_int8.h",
    ]
    # A firmware file using the header as the usage comment shows.
    main = tmp_path / "firmware/main.cc"
    main.write_text(
        "#include <cstring>\n"
        '#include "digits_int8.h"\n'
        "alignas(16) static uint8_t arena[kDigitsInt8TensorArenaSize];\n"
        "int main() {\n"
        "  static DigitsInt8OpResolver resolver;\n"
        "  if (RegisterDigitsInt8Ops(resolver) != kTfLiteOk) return 1;\n"
        "  if (sizeof(arena) % 16 != 0) return 2;\n"
        "  // A TFLite flatbuffer carries the identifier TFL3 at offset 4.\n"
        "  return std::memcmp(g_digits_int8_model_data + 4, \"TFL3\", 4);\n"
        "}\n"
    )
    for unit in (source, str(main)):
        result = subprocess.run(
            ["c++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-c",
             "-I", str(tmp_path / "include"), unit,
             "-o", str(tmp_path / (os.path.basename(unit) + ".o"))],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    program = str(tmp_path / "firmware_test")
    objects = [str(tmp_path / f"{n}.o") for n in ("digits_int8.cc", "main.cc")]
    subprocess.run(["c++", *objects, "-o", program], check=True)
    assert subprocess.run([program]).returncode == 0
