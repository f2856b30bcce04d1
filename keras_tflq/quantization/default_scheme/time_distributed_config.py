"""QAT config of the layer inside a `TimeDistributed` wrapper."""

import keras

from keras_tflq.quantization.quantize_config import QuantizeConfig

_PACKAGE = "keras_tflq"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TimeDistributedQuantizeConfig(QuantizeConfig):
    """QAT of the layer inside a `TimeDistributed`, with its own config.

    The wrapped layer's weights are quantized by `config` and its output
    ranges apply to the `TimeDistributed` output (the outputs of every
    step, stacked).

    Args:
        config: the `QuantizeConfig` of the wrapped layer.

    Example:

    ```python
    import keras
    from keras_tflq.quantization.default_scheme import registry
    from keras_tflq.quantization.default_scheme.time_distributed_config import (
        TimeDistributedQuantizeConfig,
    )

    dense = keras.layers.Dense(4)
    config = TimeDistributedQuantizeConfig(registry.default_config(dense))
    ```
    """

    def __init__(self, config):
        if isinstance(config, dict):
            config = keras.saving.deserialize_keras_object(config)
        if not isinstance(config, QuantizeConfig):
            raise ValueError(
                "Expected `config` to be a keras_tflq.QuantizeConfig. "
                f"Received: config={config!r}"
            )
        self.config = config

    def get_weights_and_quantizers(self, layer):
        return self.config.get_weights_and_quantizers(_inner(layer))

    def get_activations_and_quantizers(self, layer):
        return self.config.get_activations_and_quantizers(_inner(layer))

    def set_quantize_weights(self, layer, quantize_weights):
        self.config.set_quantize_weights(
            _Prefixed(layer, layer.layer, "layer."), quantize_weights
        )

    def set_quantize_activations(self, layer, quantize_activations):
        self.config.set_quantize_activations(
            _Prefixed(layer, layer.layer, "layer."), quantize_activations
        )

    def get_output_quantizers(self, layer):
        return self.config.get_output_quantizers(_inner(layer))

    def get_config(self):
        return {"config": keras.saving.serialize_keras_object(self.config)}


def _inner(layer):
    if not isinstance(layer, keras.layers.TimeDistributed):
        raise ValueError(
            "Expected `layer` to be a TimeDistributed layer. Received: "
            f"layer={layer.name!r} of type {type(layer).__name__}"
        )
    return layer.layer


class _Prefixed:
    """The wrapped layer as a config sees it: attribute reads go to
    `inner`, writes are recorded on `outer` under `prefix` + name."""

    def __init__(self, outer, inner, prefix):
        object.__setattr__(self, "_outer", outer)
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):
        setattr(self._outer, f"{self._prefix}{name}", value)
