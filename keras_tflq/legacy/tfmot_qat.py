"""Quantization-aware training of `tf_keras` models, delegated to tfmot.

keras_tflq's own quantizers are Keras 3 layers; a `tf_keras` model is
quantized by `tensorflow-model-optimization` (the `legacy` extra) with its
default 8-bit scheme, which follows the same TFLite int8 spec. tfmot is
imported here, on the first `tf_keras` model, never on the Keras 3 path:
importing it sets `TF_USE_LEGACY_KERAS=1` for the process.
"""

import importlib

_INSTALL = 'pip install "keras-tflq[legacy]"'
_TFMOT = "tensorflow_model_optimization"


def import_tfmot(what):
    """Imports tfmot, or raises an ImportError that names the extra.

    Args:
        what: What needs tfmot, for the message (e.g. `"quantize_model"`).

    Returns:
        The `tensorflow_model_optimization` module.

    Example:

    >>> tfmot = import_tfmot("quantize_model")
    """
    try:
        return importlib.import_module(_TFMOT)
    except ImportError as error:
        raise ImportError(
            f"Expected tensorflow-model-optimization (the `legacy` extra) "
            f"for `{what}` on a tf_keras model: keras_tflq quantizes "
            "tf_keras models through tfmot. Install it with "
            f"{_INSTALL}, or build the model with Keras 3. "
            f"Received: {error}"
        ) from error


def quantize_model(model, per_channel, activation_bits, unsupported):
    """tfmot's `quantize_model` with keras_tflq's options, checked.

    Example:

    >>> qat_model = quantize_model(tf_keras_model, True, 8, "error")
    """
    tfmot_keras = import_tfmot("quantize_model").quantization.keras
    scheme = _scheme(
        tfmot_keras, "quantize_model", per_channel, activation_bits, unsupported
    )
    annotated = tfmot_keras.quantize_annotate_model(model)
    return tfmot_keras.quantize_apply(annotated, scheme=scheme)


def quantize_annotate_layer(layer, quantize_config):
    """tfmot's `quantize_annotate_layer`; `quantize_config` must be tfmot's.

    Example:

    >>> annotated = quantize_annotate_layer(tf_keras.layers.Dense(4), None)
    """
    tfmot_keras = import_tfmot("quantize_annotate_layer").quantization.keras
    if quantize_config is not None and not isinstance(
        quantize_config, tfmot_keras.QuantizeConfig
    ):
        raise ValueError(
            "Expected `quantize_config` to be a "
            "tfmot.quantization.keras.QuantizeConfig instance or None for "
            f"the tf_keras layer {layer.name!r} (tfmot quantizes tf_keras "
            "layers; a keras_tflq.QuantizeConfig is for Keras 3 layers). "
            f"Received: quantize_config={quantize_config!r}"
        )
    return tfmot_keras.quantize_annotate_layer(layer, quantize_config)


def quantize_annotate_model(model, unsupported):
    """tfmot's `quantize_annotate_model` (it annotates every layer).

    Example:

    >>> annotated = quantize_annotate_model(tf_keras_model, "error")
    """
    _check_unsupported("quantize_annotate_model", unsupported)
    tfmot = import_tfmot("quantize_annotate_model")
    return tfmot.quantization.keras.quantize_annotate_model(model)


def quantize_apply(model, per_channel, activation_bits, unsupported):
    """tfmot's `quantize_apply` with the default 8-bit scheme.

    Example:

    >>> qat_model = quantize_apply(annotated, True, 8, "error")
    """
    tfmot_keras = import_tfmot("quantize_apply").quantization.keras
    scheme = _scheme(
        tfmot_keras, "quantize_apply", per_channel, activation_bits, unsupported
    )
    return tfmot_keras.quantize_apply(model, scheme=scheme)


def is_tfmot_quantized(model):
    """Whether a `tf_keras` model holds tfmot quantization layers.

    Reads class modules only, so it works without importing tfmot.

    Example:

    >>> is_tfmot_quantized(tf_keras_model)
    False
    """
    return any(
        type(module).__module__.startswith(_TFMOT)
        for module in model.submodules
    )


def _scheme(tfmot_keras, what, per_channel, activation_bits, unsupported):
    """tfmot's default 8-bit scheme, per-tensor when `per_channel=False`."""
    if activation_bits != 8:
        raise ValueError(
            "Expected `activation_bits` to be 8 for a tf_keras model: tfmot "
            "(which quantizes tf_keras models) trains int8 activations "
            "only; use a Keras 3 model for 16x8 QAT. "
            f"Received: activation_bits={activation_bits!r}"
        )
    _check_unsupported(what, unsupported)
    return tfmot_keras.default_8bit.Default8BitQuantizeScheme(
        disable_per_axis=not per_channel
    )


def _check_unsupported(what, unsupported):
    if unsupported != "error":
        raise ValueError(
            f'Expected `unsupported` to be "error" for `{what}` on a '
            "tf_keras model: tfmot refuses layers it cannot quantize; "
            "annotate the supported layers yourself with "
            "`quantize_annotate_layer` and call `quantize_apply`. "
            f"Received: unsupported={unsupported!r}"
        )
