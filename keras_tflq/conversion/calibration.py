"""Calibration samples for post-training integer quantization."""

import numpy as np


class CalibrationSet:
    """A bounded, checked set of calibration samples drawn from a `DataSource`.

    The samples are drawn once (at most `max_samples`, read lazily, batch by
    batch) and checked against the model's inputs: every input present, the
    shapes compatible, every value finite. They then feed the converter's
    `representative_dataset` as often as needed.

    Args:
        source: A `DataSource` to draw from.
        model_inputs: The `ModelInputs` of the model being converted.
        max_samples: The most samples to draw. Defaults to `200`.

    Example:

    ```python
    import keras, numpy as np, tensorflow as tf
    from keras_tflq.conversion.calibration import CalibrationSet
    from keras_tflq.conversion.data_source import DataSource
    from keras_tflq.conversion.model_inputs import ModelInputs

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    calibration = CalibrationSet(
        DataSource(np.random.rand(32, 8)), ModelInputs(model), max_samples=16
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration.representative_dataset
    content = converter.convert()
    ```
    """

    def __init__(self, source, model_inputs, max_samples=200):
        self.source = source
        self.model_inputs = model_inputs
        samples = source.take_samples(max_samples)
        if not samples:
            raise ValueError(
                "Expected at least one calibration sample. Received: an empty "
                f"{source.describe()}"
            )
        self._samples = [
            model_inputs.to_named_arrays(sample, source.name)
            for sample in samples
        ]
        for index, sample in enumerate(self._samples):
            for name, array in sample.items():
                if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                    raise ValueError(
                        "Expected finite calibration values. Received: NaN or "
                        "Inf in input "
                        f"'{name}' of sample {index} of {source.describe()}"
                    )

    def __len__(self):
        return len(self._samples)

    def representative_dataset(self):
        """Yields one sample at a time, keyed by the model's input names."""
        yield from self._samples

    def first(self, count):
        """A smaller `CalibrationSet`-like generator over the first `count`
        samples."""

        def representative_dataset():
            yield from self._samples[:count]

        return representative_dataset

    def describe(self):
        return {"source": self.source.describe(), "samples": len(self._samples)}

