"""QuantizationSchedule: quantization starts late, ranges and BN freeze."""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    ConvBatchNormFold,
)
from tests.helpers.models import L
from tests.helpers.models import compile_classifier
from tests.helpers.models import digits_cnn


def _variables(model, suffix):
    return [
        v.numpy().copy()
        for v in model.non_trainable_variables
        if v.path.endswith(suffix)
    ]


def _fit(model, data, callback, epochs, initial_epoch=0):
    x, y = data
    model.fit(
        x,
        y,
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=64,
        callbacks=[callback],
        verbose=0,
    )


@pytest.fixture
def qat(digits_split):
    keras.utils.set_random_seed(0)
    model = compile_classifier(tflq.quantize_model(digits_cnn()), 1e-3)
    return model, (digits_split[0][:256], digits_split[1][:256])


def test_quantization_starts_at_the_given_epoch(qat):
    model, data = qat
    schedule = tflq.QuantizationSchedule(start=1)
    _fit(model, data, schedule, epochs=1)
    assert all(v == 0.0 for v in _variables(model, "quantize_enabled"))
    _fit(model, data, schedule, epochs=2, initial_epoch=1)
    assert all(v == 1.0 for v in _variables(model, "quantize_enabled"))


def test_training_before_start_is_float():
    inputs = keras.Input((4,))
    float_model = keras.Model(inputs, L.Dense(3)(inputs))
    model = tflq.quantize_model(float_model)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 4), dtype="float32")
    schedule = tflq.QuantizationSchedule(start=5)
    model.fit(x, np.zeros((8, 3)), epochs=1, callbacks=[schedule], verbose=0)
    # Quantization disabled: the training-mode output is the float one.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=True)),
        keras.ops.convert_to_numpy(model.layers[-1].layer(x)),
        rtol=1e-6,
    )


def test_ranges_freeze_at_the_given_step(qat):
    model, data = qat
    schedule = tflq.QuantizationSchedule(freeze_ranges=2, unit="step")
    _fit(model, data, schedule, epochs=1)
    frozen = _variables(model, "output_max")
    _fit(model, data, schedule, epochs=2, initial_epoch=1)
    for before, after in zip(
        frozen, _variables(model, "output_max"), strict=False
    ):
        np.testing.assert_array_equal(before, after)


def test_batch_norm_statistics_freeze(qat):
    model, data = qat
    schedule = tflq.QuantizationSchedule(freeze_batch_norm=1)
    _fit(model, data, schedule, epochs=1)
    fold = [
        layer for layer in model.layers if isinstance(layer, ConvBatchNormFold)
    ]
    moving = fold[0].batch_norm.moving_mean.numpy().copy()
    assert np.any(moving != 0.0)  # epoch 0 updated the statistics
    _fit(model, data, schedule, epochs=3, initial_epoch=1)
    np.testing.assert_array_equal(
        fold[0].batch_norm.moving_mean.numpy(), moving
    )
    assert fold[0].bn_frozen.numpy() == 1.0


def test_schedule_config_round_trip():
    schedule = tflq.QuantizationSchedule(2, freeze_ranges=5, unit="step")
    revived = tflq.QuantizationSchedule.from_config(schedule.get_config())
    assert revived.get_config() == schedule.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(start=-1),
            "Expected `start` to be a non-negative int. Received: start=-1",
        ),
        (
            dict(freeze_ranges=1.5),
            "Expected `freeze_ranges` to be a non-negative int or None. "
            "Received: freeze_ranges=1.5",
        ),
        (dict(freeze_batch_norm=True), "Received: freeze_batch_norm=True"),
        (
            dict(unit="batch"),
            r"Expected `unit` to be one of .* Received: unit='batch'",
        ),
    ],
    ids=["start", "freeze_ranges", "freeze_batch_norm", "unit"],
)
def test_bad_arguments_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tflq.QuantizationSchedule(**kwargs)


def test_float_model_rejected_before_the_first_batch(digits_split):
    model = compile_classifier(digits_cnn(), 1e-3)
    with pytest.raises(
        ValueError, match="Expected a model quantized by keras_tflq"
    ):
        _fit(
            model,
            (digits_split[0][:64], digits_split[1][:64]),
            tflq.QuantizationSchedule(),
            epochs=1,
        )


def _train_step_ops(model):
    """Op type counts of the traced train step (its functions included);
    `"Greater 0.5"` counts the comparisons with the constant 0.5, the form
    of a schedule's `variable > 0.5` gate."""
    import collections
    import inspect

    from tensorflow.python.framework import tensor_util

    step = inspect.getclosurevars(model.train_function).nonlocals[
        "multi_step_on_iterator"
    ]
    graph = step._list_all_concrete_functions()[0].graph.as_graph_def()
    ops = collections.Counter()
    for nodes in [graph.node] + [f.node_def for f in graph.library.function]:
        by_name = {node.name: node for node in nodes}
        for node in nodes:
            ops[node.op] += 1
            if node.op != "Greater":
                continue
            for name in node.input:
                const = by_name.get(name.split(":")[0])
                if const is not None and const.op == "Const":
                    value = tensor_util.MakeNdarray(const.attr["value"].tensor)
                    if value.size == 1 and float(value) == 0.5:
                        ops["Greater 0.5"] += 1
    return ops


def test_no_schedule_traces_no_gating(qat, digits_split):
    model, data = qat
    _fit(model, data, keras.callbacks.History(), epochs=1)
    float_model = compile_classifier(digits_cnn(), 1e-3)
    _fit(float_model, data, keras.callbacks.History(), epochs=1)
    # No `variable > 0.5` test of a schedule variable: only the float
    # step's own comparisons.
    assert _train_step_ops(float_model)["Greater 0.5"] == 0
    assert _train_step_ops(model)["Greater 0.5"] == 0


def test_schedule_after_unscheduled_fit_retraces(qat):
    model, data = qat
    _fit(model, data, keras.callbacks.History(), epochs=1)
    schedule = tflq.QuantizationSchedule(freeze_ranges=1)
    assert _train_step_ops(model)["Greater 0.5"] == 0
    _fit(model, data, schedule, epochs=1)
    assert _train_step_ops(model)["Greater 0.5"] > 0
    frozen = _variables(model, "output_max")
    _fit(model, data, schedule, epochs=2, initial_epoch=1)
    for before, after in zip(
        frozen, _variables(model, "output_max"), strict=False
    ):
        np.testing.assert_array_equal(before, after)


def test_reloaded_schedule_state_holds_without_schedule(tmp_path):
    inputs = keras.Input((4,))
    model = tflq.quantize_model(keras.Model(inputs, L.Dense(3)(inputs)))
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 4), dtype="float32")
    schedule = tflq.QuantizationSchedule(start=5, freeze_ranges=0)
    model.fit(x, np.zeros((8, 3)), epochs=1, callbacks=[schedule], verbose=0)
    path = str(tmp_path / "scheduled.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    reloaded.compile("sgd", "mse")
    ranges = _variables(reloaded, "output_max")
    reloaded.fit(x, np.ones((8, 3)), epochs=1, verbose=0)
    # Still float in training (quantize_enabled 0) and ranges frozen.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x, training=True)),
        keras.ops.convert_to_numpy(reloaded.layers[-1].layer(x)),
        rtol=1e-6,
    )
    for before, after in zip(
        ranges, _variables(reloaded, "output_max"), strict=False
    ):
        np.testing.assert_array_equal(before, after)


def test_assigned_state_applies_after_retrace(qat):
    model, data = qat
    _fit(model, data, keras.callbacks.History(), epochs=1)
    for layer in model.layers:
        if getattr(layer, "ranges_frozen", None) is not None:
            layer.ranges_frozen.assign(1.0)
    model.make_train_function(force=True)
    frozen = _variables(model, "output_max")
    _fit(model, data, keras.callbacks.History(), epochs=1)
    for before, after in zip(
        frozen, _variables(model, "output_max"), strict=False
    ):
        np.testing.assert_array_equal(before, after)
