"""The inputs of a Keras model as the converted TFLite model names them."""

import keras
import numpy as np


class ModelInputs:
    """Names, shapes and dtypes of a model's inputs, in Keras' flattening order.

    The names are those the SavedModel signature (and so the TFLite
    `serving_default` signature) gives the inputs: the names of the Keras
    `Input` tensors.

    Args:
        model: A built Keras model (Sequential, functional, or a subclassed
            model that has been called).

    Example:

    ```python
    import keras
    from keras_tflq.conversion.model_inputs import ModelInputs

    image = keras.Input((8, 8, 1), name="image")
    metadata = keras.Input((3,), name="metadata")
    features = keras.layers.Concatenate()(
        [keras.layers.Flatten()(image), metadata]
    )
    model = keras.Model([image, metadata], keras.layers.Dense(2)(features))
    names = ModelInputs(model).names  # the names of the Input layers
    ```
    """

    def __init__(self, model):
        structure = _input_structure(model)
        tensors = keras.tree.flatten(structure)
        self.structure = structure
        self.names = [t.name for t in tensors]
        self.shapes = [tuple(t.shape) for t in tensors]
        self.dtypes = [
            keras.backend.standardize_dtype(t.dtype) for t in tensors
        ]

    def to_named_arrays(self, x, where="data"):
        """Maps one batch of model inputs `x` to `{input name: array}`,
        checked."""
        if (
            isinstance(x, dict)
            and set(x) <= set(self.names)
            and not _is_keyed_like(self.structure, x)
        ):
            flat = [x.get(name) for name in self.names]
        else:
            flat = keras.tree.flatten(x)
        if len(flat) != len(self.names) or any(a is None for a in flat):
            raise ValueError(
                f"Expected {len(self.names)} input(s) named {self.names} in "
                f"{where}. "
                f"Received: {_describe_structure(x)}"
            )
        named = {}
        for name, shape, dtype, array in zip(
            self.names, self.shapes, self.dtypes, flat, strict=False
        ):
            array = np.asarray(array)
            if array.ndim != len(shape) or any(
                want is not None and got != want
                for want, got in zip(shape[1:], array.shape[1:], strict=False)
            ):
                raise ValueError(
                    f"Expected input '{name}' with shape {shape} in {where}. "
                    f"Received: shape={array.shape}"
                )
            named[name] = array.astype(dtype, copy=False)
        return named


def _input_structure(model):
    try:
        if isinstance(model, keras.Sequential):
            return model.inputs[0]
        return model.input
    except (AttributeError, ValueError, TypeError, IndexError):
        raise ValueError(
            "Expected a built Sequential or functional model with known "
            "inputs. "
            f"Received: model={model.name!r}, whose inputs are not defined "
            "(build it on a keras.Input, or wrap a subclassed model in a "
            "functional one)"
        ) from None


def _is_keyed_like(structure, x):
    return isinstance(structure, dict) and set(structure) == set(x)


def _describe_structure(x):
    if isinstance(x, dict):
        return f"a dict with keys {sorted(x)}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)} array(s)"
    return f"one array of shape {np.shape(x)}"
