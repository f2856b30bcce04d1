"""Regression tests for the quantization defects found in review (issue 8)."""

import h5py
import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq import quantizers
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate


def test_equal_quantizers_hash_alike():
    first = quantizers.LastValueQuantizer(8, False, True, True)
    second = quantizers.LastValueQuantizer(8, False, True, True)
    other = quantizers.LastValueQuantizer(4, False, True, True)
    assert first == second and hash(first) == hash(second)
    assert len({first, second, other}) == 2


@keras.saving.register_keras_serializable(package="keras_tflq_tests")
class TinyNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = tflq.quantize_annotate_layer(keras.layers.Dense(4))
        self.out = tflq.quantize_annotate_layer(keras.layers.Dense(2))

    def call(self, x):
        return self.out(self.hidden(x))


def _tiny_net():
    keras.utils.set_random_seed(0)
    net = TinyNet()
    net(np.ones((1, 3), "float32"))
    return net


def _annotations(net):
    return [a for a in net.layers if isinstance(a, QuantizeAnnotate)]


def test_in_place_options_are_saved_by_name_and_reload(tmp_path):
    net = tflq.quantize_apply(_tiny_net(), unsupported="float")
    path = str(tmp_path / "net.weights.h5")
    net.save_weights(path)
    names = []
    with h5py.File(path) as saved:
        saved.visititems(
            lambda key, item: names.append(bytes(item[()]).decode())
            if key.endswith("quantize_apply_unsupported")
            else None
        )
    assert names == ["float", "float"]
    fresh = _tiny_net()
    fresh.load_weights(path)
    assert [a.applied_options for a in _annotations(fresh)] == [
        (True, 8, "float")
    ] * 2
    x = np.random.default_rng(0).random((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), net(x))


def test_saves_holding_the_old_option_index_still_load():
    annotation = _annotations(_tiny_net())[0]
    # Before 0.2: [per_channel, activation_bits, index of "float"].
    annotation.load_own_variables(
        {"quantize_apply": np.array([1, 8, 1], dtype="int32")}
    )
    assert annotation.applied_options == (True, 8, "float")


@pytest.fixture
def mixed_policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def _qat_cnn():
    keras.utils.set_random_seed(0)
    model = tflq.quantize_model(
        keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Conv2D(4, 3),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.Flatten(),
                keras.layers.Dense(10),
            ]
        )
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


@pytest.mark.parametrize(
    "mixed_policy", ["mixed_bfloat16", "mixed_float16"], indirect=True
)
def test_qat_under_mixed_precision_exports_as_its_float32_twin(
    mixed_policy, digits_split, tmp_path
):
    x_train, y_train, x_test, _ = digits_split
    model = _qat_cnn()
    model.fit(x_train[:128], y_train[:128], epochs=1, verbose=0)
    quantizing = [layer for layer in model.layers if "quant" in layer.name]
    assert quantizing
    # Ranges, BatchNormalization statistics and fake quantization: float32.
    assert {layer.compute_dtype for layer in quantizing} == {"float32"}
    assert {v.dtype for v in model.non_trainable_variables} == {"float32"}
    report = tflq.export_tflite(model, tmp_path / "mixed.tflite")
    assert report["all_integer"]

    keras.mixed_precision.set_global_policy("float32")
    reference = _qat_cnn()
    reference.set_weights(model.get_weights())
    tflq.export_tflite(reference, tmp_path / "float32.tflite")
    np.testing.assert_array_equal(
        tflq.LiteRTModel(model_path=report["path"]).predict(x_test),
        tflq.LiteRTModel(model_path=str(tmp_path / "float32.tflite")).predict(
            x_test
        ),
    )
