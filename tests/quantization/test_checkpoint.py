"""`tf.train.Checkpoint` keeps the quantizer ranges; old `.keras` files load."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from checkpoint_models import batch
from checkpoint_models import qat_model
from checkpoint_models import train

DATA = Path(__file__).parent / "data"


def _range_variables(model):
    return [
        v
        for v in model.non_trainable_variables
        if v.path.rsplit("/", 1)[-1].endswith(("_min", "_max", "_initialized"))
    ]


def _assert_same_variables(restored, saved):
    for got, expected in zip(
        restored.variables, saved.variables, strict=True
    ):
        np.testing.assert_array_equal(
            got.numpy(), expected.numpy(), err_msg=got.path
        )


def _calibrated(model):
    """Ranges moved by training-mode calls, without a traced train step."""
    for seed in range(3):
        model(batch(seed), training=True)
    return model


@pytest.mark.parametrize("manager", [False, True], ids=["save", "manager"])
def test_checkpoint_round_trip_restores_every_range(tmp_path, manager):
    # With a manager, the model was trained by fit(); `save` alone after
    # training-mode calls.
    saved = train(qat_model()) if manager else _calibrated(qat_model())
    fresh = qat_model(seed=1)
    # Trained ranges differ from a fresh model's: the restore must move them.
    moved = [
        v.path
        for v, w in zip(
            _range_variables(saved), _range_variables(fresh), strict=True
        )
        if not np.array_equal(v.numpy(), w.numpy())
    ]
    assert len(moved) >= 20, moved

    checkpoint = tf.train.Checkpoint(model=saved)
    if manager:
        path = tf.train.CheckpointManager(
            checkpoint, str(tmp_path), max_to_keep=1
        ).save()
    else:
        path = checkpoint.save(str(tmp_path / "ckpt"))
    status = tf.train.Checkpoint(model=fresh).restore(path)
    # `fresh` has no optimizer state yet: match the model's own objects.
    status.assert_existing_objects_matched().expect_partial()
    _assert_same_variables(fresh, saved)
    x = batch(2)
    np.testing.assert_array_equal(
        fresh.predict(x, verbose=0), saved.predict(x, verbose=0)
    )


def test_checkpoint_names_every_range_variable(tmp_path):
    model = qat_model()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    stored = len(tf.train.list_variables(path))
    # Every model variable, the save counter and the object graph.
    assert stored == len(model.variables) + 2


def test_keras_file_saved_before_range_tracking_loads():
    # Saved by the code before the ranges were tracked (see
    # checkpoint_models.py): the `.keras` variable layout is unchanged.
    expected = np.load(DATA / "qat_ranges_v0.npz")
    model = keras.saving.load_model(DATA / "qat_ranges_v0.keras")
    variables = model.non_trainable_variables
    names = [path.rsplit("/", 1)[-1] for path in expected["paths"]]
    assert [v.path.rsplit("/", 1)[-1] for v in variables] == names
    for index, variable in enumerate(variables):
        np.testing.assert_array_equal(
            variable.numpy(), expected[f"var{index}"], err_msg=variable.path
        )
    np.testing.assert_allclose(
        model.predict(expected["x"], verbose=0), expected["y"], atol=1e-6
    )
