"""Telling `tf_keras` (legacy Keras 2) objects from Keras 3 ones.

A `tf_keras` object is recognised by the module its class (or a base
class) is defined in, so nothing here imports `tf_keras`: if a `tf_keras`
object exists, `tf_keras` is loaded already. A process that never loaded
`tf_keras` holds no `tf_keras` layer, and its Keras 3 models are not
searched at all.
"""

import sys
from collections import abc

import keras

_TF_KERAS = "tf_keras"
_KERAS = "keras"
_NAMES = {_TF_KERAS: "tf_keras", _KERAS: "Keras 3"}


def framework_of(obj):
    """`"tf_keras"`, `"keras"` (Keras 3) or `None`, from `obj`'s class.

    Args:
        obj: Any object.

    Returns:
        The package that defines the nearest class in `type(obj).__mro__`
        coming from one of the two Keras packages, or `None`.

    Example:

    >>> framework_of(keras.layers.Dense(2))
    'keras'
    """
    for cls in type(obj).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in (_TF_KERAS, _KERAS):
            return root
    return None


def is_tf_keras_model(model, argument="model"):
    """Whether a quantization entry point must take the `tf_keras` path.

    Checks that `model` is built from one Keras only: a `tf_keras` layer
    or model holding a Keras 3 layer, or a Keras 3 one holding a
    `tf_keras` layer, is refused.

    Args:
        model: The layer or model given to the entry point.
        argument: The argument's name, for the error message.
            Defaults to `"model"`.

    Returns:
        `True` for a `tf_keras` layer or model, `False` otherwise (Keras 3
        objects and anything else, which the Keras 3 checks then judge).

    Raises:
        ValueError: `model` mixes `tf_keras` and Keras 3 layers.

    Example:

    >>> is_tf_keras_model(keras.Sequential([keras.Input((2,))]))
    False
    """
    framework = framework_of(model)
    if framework == _TF_KERAS and _is_layer(model, _TF_KERAS):
        _check_one_framework(model, _TF_KERAS, argument)
        return True
    if (
        framework == _KERAS
        and _TF_KERAS in sys.modules
        and isinstance(model, keras.layers.Layer)
    ):
        _check_one_framework(model, _KERAS, argument)
    return False


def _is_layer(obj, framework):
    if framework == _KERAS:
        return isinstance(obj, keras.layers.Layer)
    tf_keras = sys.modules.get(_TF_KERAS)
    return tf_keras is not None and isinstance(obj, tf_keras.layers.Layer)


def _check_one_framework(model, framework, argument):
    other = _TF_KERAS if framework == _KERAS else _KERAS
    for item in _reachable(model, framework):
        if framework_of(item) == other and _is_layer(item, other):
            raise ValueError(
                f"Expected `{argument}` to be built from one Keras: a "
                "Keras 3 model of Keras 3 layers (keras_tflq's own QAT), "
                "or a tf_keras model of tf_keras layers (QAT through "
                "tfmot). Received: "
                f"{argument}={getattr(model, 'name', model)!r}, a "
                f"{_NAMES[framework]} {type(model).__name__} holding the "
                f"{_NAMES[other]} layer {getattr(item, 'name', '?')!r} of "
                f"type {type(item).__name__}"
            )


def _reachable(root, framework):
    """Every object held by the layers reachable from `root`.

    Layers of `framework` are searched through their attributes, lists,
    tuples and dicts; a layer of the other Keras is yielded, not opened.
    """
    seen = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if _is_layer(item, framework):
            stack.extend(vars(item).values())
        elif isinstance(item, abc.Mapping):
            stack.extend(item.values())
        elif isinstance(item, (abc.Sequence, abc.Set)) and not isinstance(
            item, (str, bytes)
        ):
            stack.extend(item)


def legacy_versions(model):
    """`{"tf_keras": ..., "tensorflow_model_optimization": ...}` for a
    `tf_keras` model (the packages that built it, when loaded), else `{}`.

    Example:

    >>> legacy_versions(keras.Sequential([keras.Input((2,))]))
    {}
    """
    if framework_of(model) != _TF_KERAS:
        return {}
    return {
        name: getattr(sys.modules[name], "__version__", "unknown")
        for name in (_TF_KERAS, "tensorflow_model_optimization")
        if sys.modules.get(name) is not None
    }
