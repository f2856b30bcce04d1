"""`QuantizeWrapper`: a layer run with fake-quantized weights and outputs."""

import keras

from keras_tflq.quantization import precision
from keras_tflq.quantization import relu_fake_quant
from keras_tflq.quantization import schedule_state
from keras_tflq.quantization.quantize_config import QuantizeConfig
from keras_tflq.quantization.quantizer_base import build_quantizer
from keras_tflq.quantization.serialization import pop_objects

_PACKAGE = "keras_tflq"


class _AttributeRecorder:
    """Stands in for a layer in `QuantizeConfig.set_quantize_*` calls.

    Attribute writes are recorded (Keras 3 makes some of them, such as
    `Dense.kernel`, read-only properties); reads go to the real layer.
    """

    def __init__(self, layer):
        object.__setattr__(self, "_layer", layer)
        object.__setattr__(self, "_assigned", {})

    def __setattr__(self, name, value):
        self._assigned[name] = value

    def __getattr__(self, name):
        if name in self._assigned:
            return self._assigned[name]
        return getattr(self._layer, name)


class QuantizeAwareActivation:
    """An activation function followed by a fake-quantizer.

    Built by `QuantizeWrapper` for the pairs of
    `QuantizeConfig.get_activations_and_quantizers` and handed to
    `QuantizeConfig.set_quantize_activations`.
    """

    def __init__(self, activation, quantizer, weights, wrapper):
        self.activation = activation
        self.quantizer = quantizer
        self.weights = weights
        self._wrapper = wrapper
        self.__name__ = getattr(activation, "__name__", "activation")

    def __call__(self, inputs):
        outputs = self.activation(inputs)
        return schedule_state.quantize(
            self._wrapper,
            self.quantizer,
            outputs,
            self._wrapper._call_training,
            self.weights,
        )


def _attribute_owner(layer, path):
    """`(object, name)` holding attribute `path` of `layer`; a dotted path
    (`"cell.activation"`) names an attribute of a sub-object."""
    *parents, name = path.split(".")
    for parent in parents:
        layer = getattr(layer, parent)
    return layer, name


def _is_variable(value):
    return isinstance(value, keras.Variable)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class QuantizeWrapper(keras.layers.Wrapper):
    """Runs `layer` with the fake quantization its `QuantizeConfig` asks for.

    Weights are fake-quantized before each call (the float weights stay
    the trainable ones), activations and outputs after it. The quantizer
    ranges are non-trainable variables of the wrapper.

    Args:
        layer: the layer to quantize.
        quantize_config: a `keras_tflq.QuantizeConfig` for `layer`.
        **kwargs: base layer arguments (`name`, ...).

    Example:

    ```python
    import keras
    from keras_tflq.quantization.quantize_wrapper import QuantizeWrapper
    from keras_tflq.quantization.default_scheme import registry

    dense = keras.layers.Dense(4)
    wrapped = QuantizeWrapper(dense, registry.default_config(dense))
    y = wrapped(keras.ops.ones((2, 3)))
    ```
    """

    def __init__(self, layer, quantize_config, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Expected `layer` to be a keras.layers.Layer instance. "
                f"Received: layer={layer!r}"
            )
        if not isinstance(quantize_config, QuantizeConfig):
            raise ValueError(
                "Expected `quantize_config` to be a keras_tflq.QuantizeConfig "
                f"instance. Received: quantize_config={quantize_config!r}"
            )
        kwargs.setdefault("name", f"quant_{layer.name}")
        super().__init__(layer, **precision.float32_kwargs(kwargs, layer))
        self.quantize_config = quantize_config
        self._call_training = False

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        schedule_state.add_schedule_variables(self)
        config = self.quantize_config
        self._weight_entries = []
        for index, (variable, quantizer) in enumerate(
            config.get_weights_and_quantizers(self.layer)
        ):
            name = getattr(variable, "name", f"weight{index}").split("/")[-1]
            weights = build_quantizer(
                quantizer, tuple(variable.shape), name, self
            )
            self._weight_entries.append((variable, quantizer, weights))
        self._activations = []
        for index, (activation, quantizer) in enumerate(
            config.get_activations_and_quantizers(self.layer)
        ):
            weights = build_quantizer(
                quantizer, None, f"activation{index}", self
            )
            self._activations.append(
                QuantizeAwareActivation(activation, quantizer, weights, self)
            )
        self._activation_attributes = {}
        if self._activations:
            recorder = _AttributeRecorder(self.layer)
            config.set_quantize_activations(recorder, self._activations)
            self._activation_attributes = dict(recorder._assigned)
        self._output_entries = []
        output_quantizers = config.get_output_quantizers(self.layer)
        if output_quantizers:
            try:
                output_shape = self.layer.compute_output_shape(input_shape)
            except Exception:  # noqa: BLE001 - only needed for per-axis
                output_shape = None
            for index, quantizer in enumerate(output_quantizers):
                weights = build_quantizer(
                    quantizer, output_shape, f"output{index}", self
                )
                self._output_entries.append((quantizer, weights))
        self.built = True

    def _quantized_weight_mapping(self, training):
        if not self._weight_entries:
            return []
        quantized = [
            schedule_state.quantize(
                self, quantizer, variable, training, weights
            )
            for variable, quantizer, weights in self._weight_entries
        ]
        recorder = _AttributeRecorder(self.layer)
        self.quantize_config.set_quantize_weights(recorder, quantized)
        mapping = {}
        for attribute, value in recorder._assigned.items():
            target = getattr(self.layer, attribute, None)
            if _is_variable(target):
                mapping[id(target)] = (target, value)
        entries = zip(self._weight_entries, quantized, strict=True)
        for (variable, _, _), value in entries:
            mapping.setdefault(id(variable), (variable, value))
        return list(mapping.values())

    def call(self, inputs, training=None, **kwargs):
        training = bool(training)
        self._call_training = training
        if training and not kwargs:
            fused = relu_fake_quant.fused_training_call(self, inputs)
            if fused is not None:
                return fused
        mapping = self._quantized_weight_mapping(training)
        saved = []
        for path, value in self._activation_attributes.items():
            owner, name = _attribute_owner(self.layer, path)
            saved.append((owner, name, owner.__dict__.get(name)))
            object.__setattr__(owner, name, value)
        try:
            if mapping:
                with keras.StatelessScope(state_mapping=mapping) as scope:
                    outputs = self.layer(inputs, **kwargs)
                mapped = {id(variable) for variable, _ in mapping}
                for variable in self.layer.variables + self.variables:
                    if id(variable) in mapped:
                        continue
                    value = scope.get_current_value(variable)
                    if value is not None:
                        variable.assign(value)
            else:
                outputs = self.layer(inputs, **kwargs)
        finally:
            for owner, name, value in saved:
                object.__setattr__(owner, name, value)
        if not self._output_entries:
            return outputs
        flat = keras.tree.flatten(outputs)
        for index, (quantizer, weights) in enumerate(self._output_entries):
            flat[index] = schedule_state.quantize(
                self, quantizer, flat[index], training, weights
            )
        return keras.tree.pack_sequence_as(outputs, flat)

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        kwargs.pop("training", None)
        return self.layer.compute_output_spec(*args, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "quantize_config": keras.saving.serialize_keras_object(
                self.quantize_config
            ),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        (layer, quantize_config), config = pop_objects(
            config, ("layer", "quantize_config"), custom_objects
        )
        return cls(layer, quantize_config, **config)
