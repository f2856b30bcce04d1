"""Deserializing the nested objects of the quantization layers' configs."""

import keras


def pop_objects(config, keys, custom_objects=None):
    """Pops `keys` from a copy of `config`, deserializing each (None stays).

    Returns:
        The list of deserialized objects, then the remaining config.
    """
    config = dict(config)
    objects = []
    for key in keys:
        value = config.pop(key, None)
        if value is not None:
            value = keras.saving.deserialize_keras_object(
                value, custom_objects=custom_objects
            )
        objects.append(value)
    return objects, config
