"""The validation-data lookup in fit()'s frame, and a Keras that renames it."""

import pytest

from keras_tflq import TFLiteExport
from keras_tflq.callbacks import fit_validation_data
from tests.helpers.models import BatchCounter


@pytest.mark.parametrize(
    "fit_kwargs",
    [{"validation_split": 0.25}, {"validation_data": "held_out"}],
    ids=["validation_split", "validation_data"],
)
def test_lookup_reads_the_validation_data_fit_uses(
    fit_kwargs, cnn, small_digits
):
    x, y = small_digits
    if "validation_data" in fit_kwargs:
        fit_kwargs = {"validation_data": (x[180:], y[180:])}
        x, y = x[:180], y[:180]
    found = {}

    class Peek(BatchCounter):
        def on_train_begin(self, logs=None):
            found.update(
                fit_validation_data.find_fit_validation_data(self.model)
            )

    cnn.fit(
        x,
        y,
        epochs=1,
        steps_per_epoch=1,
        callbacks=[Peek()],
        verbose=0,
        **fit_kwargs,
    )
    assert found["x"].shape == (60, 8, 8, 1)
    assert found["y"].shape == (60,)
    assert found["batch_size"] == 32


def test_renamed_trainer_locals_fail_clearly_before_training(
    cnn, small_digits, workdir, monkeypatch
):
    # A newer Keras whose fit() keeps its validation data under other
    # names: simulated by looking for names this Keras does not use.
    monkeypatch.setattr(
        fit_validation_data,
        "_VALIDATION_LOCALS",
        ("validation_x", "validation_y", "validation_sample_weight"),
    )
    x, y = small_digits
    counter = BatchCounter()
    with pytest.raises(
        RuntimeError,
        match=r"Expected fit\(\)'s validation data in the trainer's locals "
        r".*without \['validation_x', 'validation_y', "
        r"'validation_sample_weight'\].*pass calibration_data= to "
        r"TFLiteExport",
    ):
        cnn.fit(
            x,
            y,
            validation_split=0.25,
            epochs=1,
            callbacks=[TFLiteExport(mode="int8", verbose=0), counter],
            verbose=0,
        )
    assert counter.batches == 0
    assert not list(workdir.iterdir())
