"""ModelInputs maps user data to the converted model's named inputs, and checks
it."""

import keras
import numpy as np
import pytest

from keras_tflq.callbacks.fit_validation_data import find_fit_validation_data
from keras_tflq.conversion.model_inputs import ModelInputs


def _model(dict_inputs):
    a = keras.Input((4,), name="zeta")
    b = keras.Input((2,), name="alpha")
    inputs = {"zeta": a, "alpha": b} if dict_inputs else [a, b]
    return keras.Model(inputs, keras.layers.Concatenate()([a, b]))


def test_list_inputs_keep_their_order():
    model_inputs = ModelInputs(_model(dict_inputs=False))
    assert model_inputs.names == ["zeta", "alpha"]
    named = model_inputs.to_named_arrays([np.zeros((3, 4)), np.ones((3, 2))])
    assert named["zeta"].shape == (3, 4) and named["alpha"].dtype == np.float32


def test_dict_inputs_are_matched_by_key():
    model_inputs = ModelInputs(_model(dict_inputs=True))
    named = model_inputs.to_named_arrays(
        {"alpha": np.ones((3, 2)), "zeta": np.zeros((3, 4))}
    )
    assert named["alpha"].shape == (3, 2) and named["zeta"].shape == (3, 4)


def test_list_model_accepts_data_keyed_by_input_name():
    named = ModelInputs(_model(dict_inputs=False)).to_named_arrays(
        {"alpha": np.ones((1, 2)), "zeta": np.zeros((1, 4))}
    )
    assert named["alpha"].shape == (1, 2)


@pytest.mark.parametrize(
    "x, match",
    [
        (
            [np.zeros((3, 4))],
            r"2 input\(s\) named \['zeta', 'alpha'\] in data. Received: a list "
            r"of 1 array",
        ),
        (
            [np.zeros((3, 4)), np.zeros((3, 3))],
            r"input 'alpha' with shape \(None, 2\) in data. Received: "
            r"shape=\(3, 3\)",
        ),
    ],
    ids=["missing_input", "wrong_shape"],
)
def test_mismatched_data_names_the_input(x, match):
    with pytest.raises(ValueError, match=match):
        ModelInputs(_model(dict_inputs=False)).to_named_arrays(x)


def test_subclassed_model_without_inputs_is_rejected():
    class Free(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(
        ValueError,
        match=r"built Sequential or functional model with known inputs",
    ):
        ModelInputs(Free(name="free"))


def test_validation_lookup_outside_fit_is_an_error():
    model = _model(dict_inputs=False)
    with pytest.raises(
        RuntimeError,
        match=r"inside model.fit\(\).*pass calibration_data= explicitly",
    ):
        find_fit_validation_data(model)
