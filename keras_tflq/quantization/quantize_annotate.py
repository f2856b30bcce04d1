"""`QuantizeAnnotate`: marks a layer for quantization, changing nothing else."""

import keras
import numpy as np

from keras_tflq.quantization import graph as keras_graph
from keras_tflq.quantization import in_place
from keras_tflq.quantization.serialization import pop_objects

# What `quantize_apply` does with a layer the default scheme cannot
# quantize. Saved by name (below); older saves hold an index into it, so
# its order is frozen: append new choices only.
UNSUPPORTED_CHOICES = ("error", "float")
# The weights-file entries recording that an annotation was quantized in
# place (inside a subclassed model): [per_channel, activation_bits], and the
# `unsupported` choice by name (UTF-8 bytes). Older saves held
# [per_channel, activation_bits, index in UNSUPPORTED_CHOICES] in the first
# entry alone; that order is frozen so they keep loading.
_APPLIED_KEY = "quantize_apply"
_UNSUPPORTED_KEY = "quantize_apply_unsupported"


def annotations_in(model):
    """The `QuantizeAnnotate` layers `model` tracks, recursively."""
    return [
        layer
        for layer in keras_graph.flatten_layers(model)
        if isinstance(layer, QuantizeAnnotate)
    ]


@keras.saving.register_keras_serializable(package="keras_tflq")
class QuantizeAnnotate(keras.layers.Wrapper):
    """Marks `layer` to be quantized by `quantize_apply`; runs it unchanged.

    Built by `keras_tflq.quantize_annotate_layer`; the wrapped layer is
    called as is, so an annotated model trains and predicts exactly like
    the float model until `quantize_apply` is called.

    In a Functional or Sequential model, `quantize_apply` replaces the
    annotation with a quantized layer in a new model. In a subclassed
    model, whose call graph cannot be rebuilt, `quantize_apply` activates
    the annotation in place: from then on it runs `quantized`, a
    quantizing layer around the same `layer` (the same float weights).
    The activation is recorded in the model's weights, so a saved model
    reloads quantized even though its `__init__` creates fresh, inactive
    annotations.

    Args:
        layer: the layer to annotate.
        quantize_config: a `keras_tflq.QuantizeConfig`, or `None` for the
            default scheme's config. Defaults to `None`.
        **kwargs: base layer arguments.

    Example:

    ```python
    import keras
    from keras_tflq.quantization.quantize_annotate import QuantizeAnnotate

    annotated = QuantizeAnnotate(keras.layers.Dense(4))
    y = annotated(keras.ops.ones((2, 3)))
    ```
    """

    def __init__(self, layer, quantize_config=None, **kwargs):
        kwargs.setdefault("name", f"annotate_{layer.name}")
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config
        self.quantized = None
        self._applied = None

    def build(self, input_shape=None):
        if isinstance(self.layer, keras.layers.MultiHeadAttention):
            # Built from the shapes of all its inputs, when first called.
            self.built = True
            return
        super().build(input_shape)

    def _build_attention(self, args, kwargs):
        """Builds a MultiHeadAttention from its (query, value, key)."""
        if self.layer.built or not isinstance(
            self.layer, keras.layers.MultiHeadAttention
        ):
            return
        names = ("query", "value", "key")
        tensors = dict(zip(names, args, strict=False))
        tensors.update({k: kwargs[k] for k in names if k in kwargs})
        key = tensors.get("key")
        self.layer.build(
            tensors["query"].shape,
            tensors["value"].shape,
            None if key is None else key.shape,
        )

    @property
    def applied_options(self):
        """`(per_channel, activation_bits, unsupported)` of the in-place
        `quantize_apply` that activated this annotation, or `None`."""
        if self._applied is None:
            return None
        per_channel, activation_bits, unsupported = self._applied.split(",")
        return per_channel == "1", int(activation_bits), unsupported

    def activate(self, quantized, per_channel, activation_bits, unsupported):
        """Runs `quantized` (a built layer around `self.layer`, or `None`
        to stay float) from now on; called by the in-place
        `quantize_apply` with its options."""
        with keras_graph.untracked(self):
            self.quantized = quantized
        # A string, not a tuple: the saver walks tuple attributes.
        self._applied = f"{int(per_channel)},{activation_bits},{unsupported}"

    def call(self, inputs, *args, **kwargs):
        if self.quantized is not None:
            return self.quantized(inputs, *args, **kwargs)
        return self.layer(inputs, *args, **kwargs)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        self._build_attention(args, kwargs)
        return self.layer.compute_output_spec(*args, **kwargs)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        options = self.applied_options
        if options is not None:
            per_channel, activation_bits, unsupported = options
            store[_APPLIED_KEY] = np.array(
                [int(per_channel), activation_bits], dtype="int32"
            )
            store[_UNSUPPORTED_KEY] = np.frombuffer(
                unsupported.encode("utf-8"), dtype="uint8"
            )

    def load_own_variables(self, store):
        if _APPLIED_KEY not in list(store.keys()):
            super().load_own_variables(store)
            return
        values = [int(v) for v in np.asarray(store[_APPLIED_KEY])]
        if _UNSUPPORTED_KEY in list(store.keys()):
            unsupported = bytes(
                np.asarray(store[_UNSUPPORTED_KEY], dtype="uint8")
            ).decode("utf-8")
        else:
            unsupported = UNSUPPORTED_CHOICES[values[2]]
        options = (bool(values[0]), values[1], unsupported)
        if self.applied_options is None:
            # Saved after an in-place `quantize_apply`: quantize again, so
            # the quantizer variables loaded next exist.
            in_place.activate_annotations([self], *options)
        elif self.applied_options != options:
            raise ValueError(
                f"Expected the weights of annotation {self.name!r} to come "
                "from a model quantized with the same options. Received: "
                "(per_channel, activation_bits, unsupported) saved="
                f"{options}, in the model={self.applied_options}"
            )

    def get_config(self):
        config = {**super().get_config()}
        if self.quantize_config is not None:
            config["quantize_config"] = keras.saving.serialize_keras_object(
                self.quantize_config
            )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        (layer, quantize_config), config = pop_objects(
            config, ("layer", "quantize_config"), custom_objects
        )
        return cls(layer, quantize_config, **config)
