"""The default scheme's layer table is consistent with the plan and rewrite."""

import keras
import numpy as np
import pytest

import keras_tflq as tflq
from keras_tflq.quantization.default_scheme import registry
from keras_tflq.quantization.default_scheme.conv_batchnorm_fold import (
    FOLDABLE_CONVS,
)
from keras_tflq.quantization.default_scheme.registry import Kind
from keras_tflq.quantization.default_scheme.registry import Merge
from keras_tflq.quantization.default_scheme.rewrite import Rewriter

L = keras.layers
ROWS = {
    getattr(row.match, "__name__", row.match)
    + ("" if isinstance(row.match, type) else "_op"): row
    for row in registry.TABLE
}


def test_each_class_and_op_is_listed_once():
    matches = [row.match for row in registry.TABLE]
    assert len(matches) == len(set(matches))
    assert len(ROWS) == len(registry.TABLE)


def test_every_kind_in_the_table_has_a_replacement():
    # Passthrough layers stay float; nested models are an action.
    for row in registry.TABLE:
        if row.kind is not Kind.PASSTHROUGH:
            method = Rewriter.KIND_REPLACEMENTS[row.kind]
            assert callable(getattr(Rewriter, method)), row
    unlisted = set(Kind) - {row.kind for row in registry.TABLE}
    assert unlisted == {Kind.MODEL}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_row_is_consistent(row):
    if isinstance(row.match, type):
        assert issubclass(row.match, L.Layer)
    else:
        # Keras ops are matched by class name: arithmetic, range-free or
        # with TFLite's fixed output range.
        assert row.kind in (Kind.OP, Kind.PASSTHROUGH, Kind.FIXED_RANGE_OP)
    # Only layers with weights quantize weights, split their activation
    # and may have per-channel weights (convolutions).
    weighted = (Kind.CONV, Kind.TRANSPOSED_CONV, Kind.DENSE)
    # Recurrent layers and embeddings quantize weights through their own
    # configs (sequence_configs.py, attention_configs.py), no activation.
    with_weights = weighted + (Kind.RECURRENT, Kind.EMBEDDING)
    assert bool(row.weight_attrs) == (row.kind in with_weights)
    assert row.split_activation == (row.kind in weighted)
    assert row.per_channel == (row.kind is Kind.CONV)
    if row.merge is not None:
        assert row.kind is Kind.OUTPUT
        assert issubclass(row.match, L.Layer)
    if row.fuses_relu:
        assert row.kind in (Kind.CONV, Kind.DENSE, Kind.OUTPUT, Kind.OP)


def test_derived_class_lists_come_from_the_table():
    assert set(FOLDABLE_CONVS) == {
        row.match for row in registry.TABLE if row.kind is Kind.CONV
    }
    assert set(registry.DEPTHWISE_CONVS) <= set(FOLDABLE_CONVS)
    merges = {row.match: row.merge for row in registry.TABLE if row.merge}
    assert merges[L.Average] is Merge.MEAN
    assert merges[L.Concatenate] is Merge.CONCATENATE


@pytest.mark.parametrize(
    "layer, kind",
    [
        (L.Conv2D(2, 1), Kind.CONV),
        (L.SpatialDropout2D(0.1), Kind.PASSTHROUGH),  # a Dropout subclass
        (L.ReLU(6.0), Kind.ACTIVATION),
        (L.ReLU(4.0), None),  # several TFLite ops
        (L.Dense(2, activation="elu"), None),  # no int8 ELU kernel
        (L.LayerNormalization(), Kind.LAYER_NORM),
        (L.LayerNormalization(axis=1), None),  # the last axis only
        (L.RMSNormalization(), None),
        (keras.Sequential([L.Dense(2)]), Kind.MODEL),
    ],
    ids=[
        "conv",
        "subclass",
        "relu6",
        "relu4",
        "dense_elu",
        "ln",
        "ln_axis_1",
        "rms",
        "model",
    ],
)
def test_kind_of_a_layer(layer, kind):
    assert registry.kind(layer) is kind


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.Dense(4, activation="hard_sigmoid"),
        lambda: L.Conv2D(4, 1, activation="hard_sigmoid"),
    ],
    ids=["dense", "conv"],
)
def test_builtin_hard_sigmoid_keeps_its_layer(make):
    # The activation is split off and run as TFLite's ops; the layer
    # itself stays (it was once replaced by the activation alone).
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2, 2, 3))
    model = keras.Model(inputs, make()(inputs))
    qat = tflq.quantize_model(model)
    x = np.random.default_rng(0).random((4, 2, 2, 3), dtype="float32")
    qat(x, training=True)
    expected = keras.ops.convert_to_numpy(model(x))
    got = keras.ops.convert_to_numpy(qat(x))
    assert got.shape == expected.shape
    # int8 outputs in [0, 1]: within a few steps of 1/255.
    np.testing.assert_allclose(got, expected, atol=0.05)
