"""One precision per Keras layer in one artifact, with ai-edge-quantizer.

ai-edge-quantizer (AEQ), Google's post-training quantizer for LiteRT,
takes the float32 artifact and a recipe that gives each op, selected by a
regex on its output tensor name, 8-bit or 16-bit activations (8-bit
weights, per channel) or no quantization, and inserts the
QUANTIZE/DEQUANTIZE ops between layers of different precision. The
converter's own selective quantization
(`tf.lite.experimental.QuantizationDebugger` with `denylisted_nodes`) can
only keep ops in float, not give them 16-bit activations, and the
debugger fails on models not converted in its debug mode
(tensorflow#86949).
"""

import contextlib
import os
import re
import warnings

import numpy as np


def mixed_precision_artifact(
    float_content, graph, layer_precision, base, calibration
):
    """Quantizes a float32 artifact with one precision per Keras layer (AEQ).

    Args:
        float_content: The float32 artifact's bytes.
        graph: The `GraphLayers` of the float32 artifact.
        layer_precision: `{layer name: "int8" | "int16x8" | "float32"}`.
        base: The precision of every op not attributed to a layer.
        calibration: The `CalibrationSet` (samples keyed by input name).

    Returns:
        The quantized artifact's bytes.
    """
    from ai_edge_quantizer import quantizer as aeq

    recipe = aeq.Quantizer(bytearray(float_content))
    _set_precision(recipe, ".*", base)
    for layer, precision in layer_precision.items():
        names = graph.ops_of(layer)
        if precision != base and names:
            # AEQ's op scope is its output tensor names, each followed by ";".
            regex = "^(?:" + "|".join(re.escape(n) for n in names) + ");?$"
            _set_precision(recipe, regex, precision)
    samples = list(calibration.representative_dataset())
    # AEQ averages ranges over calibration batches (a moving average); one
    # batch of every sample gives the plain min/max the converter uses.
    batch = [{k: np.concatenate([s[k] for s in samples]) for k in samples[0]}]
    with (
        warnings.catch_warnings(),
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),  # AEQ prints sizes and timings,
        contextlib.redirect_stderr(devnull),  # and progress bars.
    ):
        warnings.simplefilter("ignore")
        result = recipe.quantize(
            recipe.calibrate({"serving_default": batch}, num_threads=1)
        )
    return bytes(result.quantized_model)


def _set_precision(recipe, regex, precision):
    if precision == "float32":
        recipe.update_quantization_recipe(
            regex=regex, operation_name="*", algorithm_key="no_quantize"
        )
    else:
        recipe.add_static_config(
            regex,
            "*",
            activation_num_bits=16 if precision == "int16x8" else 8,
            weight_num_bits=8,
        )
