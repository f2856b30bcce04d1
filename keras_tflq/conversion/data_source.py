"""Lazy access to every form of data that `fit()` accepts."""

import itertools

import keras
import numpy as np
import tensorflow as tf


class DataSource:
    """Reads batches lazily from any data form that Keras' `fit()` accepts.

    Forms: a NumPy array or tensor (single input), a list/tuple/dict of
    arrays (multi-input), a tuple `(x, y)` or `(x, y, sample_weight)` of
    those, a `tf.data.Dataset` of batches, a `keras.utils.PyDataset`, a
    Python generator or iterator of batches, or a callable returning one
    (called again each time the data is read).

    Nothing is materialised whole: batches are read one at a time and
    `take_samples` stops reading once it has what it needs.

    Args:
        data: The data, in one of the forms above.
        y: Targets when `data` holds only the inputs (as `fit(x, y)`).
            Defaults to `None`.
        sample_weight: Sample weights beside `data` and `y`.
            Defaults to `None`.
        batch_size: Batch size used to slice in-memory arrays.
            Defaults to `32`.
        name: Where the data came from, used in reports and error messages.
            Defaults to `"data"`.

    Example:

    >>> source = DataSource((np.zeros((10, 4)), np.ones(10)), batch_size=4)
    >>> [x.shape for x, y, w in source.batches()]
    [(4, 4), (4, 4), (2, 4)]
    """

    def __init__(
        self, data, y=None, sample_weight=None, batch_size=32, name="data"
    ):
        if data is None:
            raise ValueError(f"Expected data for {name}. Received: data=None")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                "Expected a positive integer batch_size. Received: "
                f"batch_size={batch_size!r}"
            )
        self.name = name
        self.batch_size = batch_size
        self._data = data
        self._y = y
        self._sample_weight = sample_weight
        self.kind = _kind_of(data)
        if self.kind == "iterator":
            # A one-shot iterator: remember what was read so a second pass
            # (the trial conversion, then the real one) sees the same data.
            self._data = _ReplayableIterator(data)

    def batches(self):
        """Yields `(x, y, sample_weight)` batches; `y`/`sample_weight` may be
        `None`."""
        if self.kind == "arrays":
            yield from self._array_batches()
            return
        if self.kind == "dataset":
            iterator = iter(self._data)
        elif self.kind == "py_dataset":
            iterator = (self._data[i] for i in _py_dataset_indices(self._data))
        elif self.kind == "callable":
            iterator = iter(self._data())
        else:
            iterator = iter(self._data)
        for batch in iterator:
            yield keras.utils.unpack_x_y_sample_weight(_to_numpy(batch))

    def num_batches(self):
        """The number of batches per pass, or `None` when it is not known in
        advance."""
        if self.kind == "arrays":
            x, _, _ = self._array_parts()
            return -(
                -_batch_size_of(keras.tree.flatten(x), self.name)
                // self.batch_size
            )
        if self.kind == "dataset":
            cardinality = int(self._data.cardinality())
            return cardinality if cardinality >= 0 else None
        if self.kind == "py_dataset":
            return self._data.num_batches
        return None

    def take_samples(self, count):
        """Returns up to `count` samples as a list of input structures of batch
        1."""
        samples = []
        for x, _, _ in self.batches():
            flat = keras.tree.flatten(x)
            size = _batch_size_of(flat, self.name)
            for i in range(size):
                samples.append(
                    keras.tree.map_structure(lambda a, i=i: a[i : i + 1], x)
                )
                if len(samples) >= count:
                    return samples
        return samples

    def _array_parts(self):
        """`(x, y, sample_weight)` of in-memory data, as NumPy arrays."""
        x, y, w = self._data, self._y, self._sample_weight
        if isinstance(x, tuple) and y is None:
            x, y, w = keras.utils.unpack_x_y_sample_weight(x)
        return _to_numpy((x, y, w))

    def _array_batches(self):
        x, y, w = self._array_parts()
        total = _batch_size_of(keras.tree.flatten(x), self.name)
        for start in range(0, total, self.batch_size):
            stop = min(start + self.batch_size, total)
            rows = slice(start, stop)
            yield tuple(
                None
                if part is None
                else keras.tree.map_structure(
                    lambda a, rows=rows: a[rows], part
                )
                for part in (x, y, w)
            )

    def describe(self):
        """A short description of the source for reports."""
        return f"{self.name} ({self.kind})"


class _ReplayableIterator:
    """Iterates a one-shot iterator once, replaying what was read on later
    passes."""

    def __init__(self, iterator):
        self._iterator = iter(iterator)
        self._seen = []

    def __iter__(self):
        yield from list(self._seen)
        for item in self._iterator:
            self._seen.append(item)
            yield item


def _kind_of(data):
    if isinstance(data, tf.data.Dataset):
        return "dataset"
    if isinstance(data, keras.utils.PyDataset):
        return "py_dataset"
    if isinstance(data, (np.ndarray, list, tuple, dict)) or hasattr(
        data, "__array__"
    ):
        return "arrays"
    if callable(data):
        return "callable"
    if hasattr(data, "__iter__") or hasattr(data, "__next__"):
        return "iterator"
    raise ValueError(
        "Expected an array, a list/tuple/dict of arrays, a tf.data.Dataset, "
        "a keras.utils.PyDataset, a generator or a callable returning one. "
        f"Received: data of type {type(data).__name__}"
    )


def _py_dataset_indices(py_dataset):
    length = py_dataset.num_batches
    return itertools.count() if length is None else range(length)


def _to_numpy(structure):
    def convert(value):
        if value is None or isinstance(value, np.ndarray):
            return value
        return np.asarray(value)

    if isinstance(structure, tuple):
        return tuple(
            keras.tree.map_structure(convert, part)
            if part is not None
            else None
            for part in structure
        )
    return keras.tree.map_structure(convert, structure)


def _batch_size_of(flat_arrays, name):
    sizes = {len(a) for a in flat_arrays if a is not None}
    if len(sizes) != 1:
        raise ValueError(
            f"Expected every input array in {name} to have the same number of "
            f"samples. Received: sizes={sorted(sizes)}"
        )
    return sizes.pop()

