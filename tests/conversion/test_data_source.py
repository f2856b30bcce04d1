"""DataSource reads every form fit() accepts, lazily and in batches."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tflq.conversion.data_source import DataSource

X = np.arange(10 * 3, dtype="float32").reshape(10, 3)
Y = np.arange(10)


def _generator():
    for start in range(0, 10, 4):
        yield X[start : start + 4], Y[start : start + 4]


class _Batches(keras.utils.PyDataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return X[index * 4 : index * 4 + 4], Y[index * 4 : index * 4 + 4]


FORMS = {
    "arrays_with_y": lambda: DataSource(X, Y, batch_size=4),
    "tuple": lambda: DataSource((X, Y), batch_size=4),
    "dataset": lambda: DataSource(
        tf.data.Dataset.from_tensor_slices((X, Y)).batch(4)
    ),
    "py_dataset": lambda: DataSource(_Batches()),
    "generator": lambda: DataSource(_generator()),
    "callable": lambda: DataSource(_generator),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_yields_the_same_batches(form):
    batches = list(FORMS[form]().batches())
    assert [len(x) for x, _, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _, _ in batches]), X)
    np.testing.assert_array_equal(np.concatenate([y for _, y, _ in batches]), Y)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_can_be_read_twice(form):
    source = FORMS[form]()
    first = [x for x, _, _ in source.batches()]
    second = [x for x, _, _ in source.batches()]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))


def test_take_samples_stops_reading_once_it_has_enough():
    reads = []

    def counting():
        for start in range(0, 10, 4):
            reads.append(start)
            yield X[start : start + 4]

    samples = DataSource(counting).take_samples(5)
    assert len(samples) == 5 and samples[0].shape == (1, 3)
    np.testing.assert_array_equal(np.concatenate(samples), X[:5])
    assert reads == [0, 4]


def test_multi_input_dicts_are_sliced_per_sample():
    source = DataSource({"a": X, "b": Y[:, None]}, batch_size=3)
    samples = source.take_samples(2)
    assert set(samples[1]) == {"a", "b"}
    np.testing.assert_array_equal(samples[1]["a"], X[1:2])


@pytest.mark.parametrize(
    "form, expected",
    [("tuple", 3), ("dataset", 3), ("py_dataset", 3), ("generator", None)],
)
def test_num_batches_is_known_when_the_form_tells(form, expected):
    assert FORMS[form]().num_batches() == expected


def test_unequal_input_lengths_are_rejected():
    with pytest.raises(
        ValueError, match=r"same number of samples. Received: sizes=\[9, 10\]"
    ):
        list(DataSource([X, X[:9]]).batches())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data": None}, r"Expected data for data. Received: data=None"),
        (
            {"data": X, "batch_size": 0},
            r"positive integer batch_size. Received: batch_size=0",
        ),
        ({"data": 3.5}, r"Received: data of type float"),
    ],
    ids=["none", "batch_size", "scalar"],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataSource(**kwargs)
