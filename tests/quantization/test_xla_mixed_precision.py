"""QAT under XLA (`jit_compile=True`) and mixed-precision policies: the same
ranges and BatchNormalization statistics as graph mode, the same int8
artifact as a float32-policy model."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from qat_helpers import run  # noqa: E402
from qat_helpers import tensor_types  # noqa: E402

import keras_tflq as tflq  # noqa: E402
from keras_tflq import quantizers  # noqa: E402

L = keras.layers
STEPS = 4
BATCH = 16


def _conv_bn_model():
    """Conv+BN (folded), depthwise+BN, a residual Add, a Dense head."""
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = L.BatchNormalization(momentum=0.5)(x)
    x = L.ReLU()(x)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    y = L.BatchNormalization(momentum=0.5)(y)
    x = L.Add()([x, L.ReLU(6.0)(y)])
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (STEPS * BATCH, 8, 8, 1)).astype("float32")
    return x, rng.integers(0, 10, len(x))


def _statistics(model):
    """[(variable name, value)] of every range, BN moving statistic and
    schedule variable (the non-trainable state QAT updates), in model
    order (layer names differ between models of one process)."""
    return [
        (v.name, np.asarray(v.numpy(), "float64"))
        for v in model.non_trainable_variables
    ]


def _train(policy, jit_compile, run_eagerly=False):
    """A QAT model trained `STEPS` steps under `policy`, from the same
    initial weights whatever the mode."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = tflq.quantize_model(_conv_bn_model())
        model.compile(
            keras.optimizers.SGD(0.05),
            "sparse_categorical_crossentropy",
            jit_compile=jit_compile,
            run_eagerly=run_eagerly,
        )
        x, y = _data()
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


@pytest.fixture(scope="module")
def graph_model():
    return _train("float32", jit_compile=False)


@pytest.mark.parametrize(
    "policy, jit_compile, run_eagerly",
    [
        ("float32", False, True),
        ("float32", True, False),
        ("mixed_float16", False, False),
        ("mixed_bfloat16", False, False),
        ("mixed_bfloat16", True, False),
    ],
)
def test_ranges_and_batchnorm_statistics_match_graph_mode(
    graph_model, policy, jit_compile, run_eagerly
):
    model = _train(policy, jit_compile, run_eagerly)
    expected = _statistics(graph_model)
    got = dict(enumerate(value for _, value in _statistics(model)))
    assert [name for name, _ in _statistics(model)] == [
        name for name, _ in expected
    ]
    assert any(name.endswith("_min") for name, _ in expected)
    assert any(name == "moving_mean" for name, _ in expected)
    for index, (name, value) in enumerate(expected):
        # Ranges and BN statistics moved from their initial values ...
        if name.endswith(("_min", "_max")):
            assert not np.allclose(np.abs(value), 6.0), name
        # ... and to the same values in every mode (the QAT layers compute
        # in float32 under any policy; XLA reorders float sums, which can flip
        # a rounding of the fake-quantized weights: a few % after 4 steps).
        np.testing.assert_allclose(
            got[index], value, rtol=3e-2, atol=1e-3, err_msg=name
        )


@pytest.mark.parametrize(
    "policy, jit_compile",
    [("mixed_float16", False), ("mixed_bfloat16", True)],
)
def test_export_is_the_float32_policy_int8_artifact(
    tmp_path, policy, jit_compile
):
    model = _train(policy, jit_compile)
    x, _ = _data()
    # The same weights in a model built under the float32 policy.
    keras.utils.set_random_seed(0)
    reference = tflq.quantize_model(_conv_bn_model())
    reference.set_weights(model.get_weights())
    reports = {}
    for name, keras_model in (("trained", model), ("reference", reference)):
        reports[name] = tflq.export_tflite(
            keras_model,
            str(tmp_path / f"{name}.tflite"),
            mode="int8",
            calibration_data=x,
        )
    trained = (tmp_path / "trained.tflite").read_bytes()
    expected = (tmp_path / "reference.tflite").read_bytes()
    types = set(tensor_types(trained).values())
    assert types <= {"int8", "int32"}, types
    assert (
        reports["trained"]["op_counts"] == reports["reference"]["op_counts"]
    )
    np.testing.assert_array_equal(
        run(trained, x[:8])[0], run(expected, x[:8])[0]
    )


class _PyFunctionQuantizer(quantizers.LastValueQuantizer):
    """Rounds through `tf.py_function`, which XLA cannot compile."""

    def __call__(self, inputs, training, weights, **kwargs):
        rounded = tf.py_function(tf.round, [inputs], inputs.dtype)
        rounded.set_shape(inputs.shape)
        # Straight-through: the gradient of the identity.
        return inputs + tf.stop_gradient(rounded - inputs)


class _PyFunctionConfig(tflq.QuantizeConfig):
    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            _PyFunctionQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


def test_xla_rejects_a_quantizer_before_the_first_batch():
    inputs = keras.Input((4,))
    dense = tflq.quantize_annotate_layer(L.Dense(2), _PyFunctionConfig())
    annotated = keras.Model(inputs, dense(inputs))
    with keras.utils.custom_object_scope(
        {"_PyFunctionConfig": _PyFunctionConfig}
    ):
        model = tflq.quantize_apply(annotated)
    model.compile("sgd", "mse", jit_compile=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    x = np.ones((8, 4), "float32")
    with pytest.raises(
        ValueError,
        match=r"_PyFunctionQuantizer of layer 'quant_dense.*XLA rejects",
    ):
        model.fit(x, np.zeros((8, 2)), batch_size=4, verbose=0)
    # No batch ran: the weights are untouched.
    for old, variable in zip(before, model.trainable_variables, strict=True):
        np.testing.assert_array_equal(old, variable.numpy())
    # Without XLA the same model trains.
    model.compile("sgd", "mse", jit_compile=False)
    model.fit(x, np.zeros((8, 2)), batch_size=4, verbose=0)
