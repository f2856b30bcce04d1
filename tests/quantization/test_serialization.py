"""Every class round-trips its config; a QAT model reloads with no scope."""

import keras
import numpy as np
import pytest
from qat_helpers import L
from qat_helpers import compile_classifier
from qat_helpers import digits_cnn

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme.channel_affine import (
    QuantizeChannelAffine,
)
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)
from keras_tflq.quantization.default_scheme.default_quantize_config import (
    DefaultQuantizeConfig,
)
from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate
from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper

LAYERS = {
    "QuantizeWrapper": lambda: QuantizeWrapper(
        L.Conv2D(3, 3), DefaultQuantizeConfig(["kernel"], [3])
    ),
    "QuantizeAnnotate": lambda: QuantizeAnnotate(
        L.Conv2D(3, 3), DefaultQuantizeConfig(["kernel"], [3])
    ),
    "QuantizeAnnotate_default": lambda: QuantizeAnnotate(L.Conv2D(3, 3)),
    "ConvBatchNormFold": lambda: ConvBatchNormFold(
        L.Conv2D(3, 3), L.BatchNormalization(), quantize_output=False
    ),
    "QuantizeChannelAffine": lambda: QuantizeChannelAffine(
        L.Rescaling(0.5, offset=-1.0), activation_bits=16
    ),
}


@pytest.mark.parametrize("make", LAYERS.values(), ids=LAYERS.keys())
def test_layer_config_round_trip_predicts_identically(make):
    layer = make()
    x = np.random.default_rng(0).random((2, 6, 6, 3), dtype="float32")
    layer(x, training=True)  # set the quantizer ranges
    config = layer.get_config()
    revived = type(layer).from_config(config)
    revived(x)
    revived.set_weights(layer.get_weights())
    assert revived.get_config() == config
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(revived(x)),
        keras.ops.convert_to_numpy(layer(x)),
    )


def test_default_quantize_config_round_trip():
    config = DefaultQuantizeConfig(["kernel"], [2], False, 16)
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(config)
    )
    assert isinstance(revived, DefaultQuantizeConfig)
    assert revived.get_config() == config.get_config()


@pytest.mark.parametrize("activation_bits", [8, 16], ids=["int8", "int16"])
def test_saved_qat_model_reloads_without_scope_and_resumes(
    tmp_path, digits_split, activation_bits
):
    x_train, y_train, x_test, _ = digits_split
    keras.utils.set_random_seed(0)
    model = compile_classifier(
        tflq.quantize_model(digits_cnn(), activation_bits=activation_bits),
        1e-3,
    )
    model.fit(x_train[:256], y_train[:256], epochs=1, verbose=0)
    path = tmp_path / "qat.keras"
    model.save(path)

    reloaded = keras.saving.load_model(path)

    np.testing.assert_array_equal(
        reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )
    assert tflq.quantization.is_quantized_model(reloaded)
    # Training resumes where it stopped: same optimizer state, same step.
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations)
    before = reloaded.evaluate(x_train[:256], y_train[:256], verbose=0)[0]
    reloaded.fit(x_train[:256], y_train[:256], epochs=2, verbose=0)
    after = reloaded.evaluate(x_train[:256], y_train[:256], verbose=0)[0]
    assert after < before


def test_time_distributed_qat_model_reloads_without_scope(tmp_path):
    # TimeDistributed's QAT config must be registered: the isolated
    # conversion of recurrent models reloads the model from a .keras file.
    model = tflq.quantize_model(
        keras.Sequential(
            [
                keras.Input((8, 8)),
                L.TimeDistributed(L.Dense(4)),
                L.Flatten(),
                L.Dense(3),
            ]
        )
    )
    x = np.random.default_rng(0).random((4, 8, 8), dtype="float32")
    path = str(tmp_path / "td.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
