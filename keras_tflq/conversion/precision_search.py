"""Accuracy-budgeted export: per-layer precision chosen to keep the score.

`TFLiteExport(..., max_drop={"accuracy": 0.01})` exports as usual; when the
integer artifact scores worse on the validation data than the Keras model by
more than the budget, the layers that cost most are raised one precision
step at a time (int8 -> int16 activations -> float), re-measured, and the
smallest artifact that meets the budget is written.

The parts, one job each: `score_budget` (the budget, checked against the
compiled metrics, and how scores compare to it), `mixed_precision` (one
artifact with one precision per Keras layer, made by ai-edge-quantizer),
`precision_candidates` (the candidates and the greedy search over them)
and this module (the export that runs the search and writes the
smallest candidate within the budget, with its report).
"""

import functools
import inspect
import time
import warnings

from keras_tflq.conversion.converter import convert_and_inspect
from keras_tflq.conversion.export import export_artifact
from keras_tflq.conversion.export import write_with_report
from keras_tflq.conversion.mixed_precision import mixed_precision_artifact
from keras_tflq.conversion.precision_candidates import Candidate
from keras_tflq.conversion.precision_candidates import PrecisionSearch
from keras_tflq.conversion.precision_candidates import format_scores
from keras_tflq.conversion.report import build_report
from keras_tflq.conversion.score_budget import BUDGET_MODES
from keras_tflq.conversion.score_budget import ScoreBudget
from keras_tflq.conversion.score_budget import build_budget
from keras_tflq.conversion.score_budget import check_max_drop
from keras_tflq.conversion.score_budget import require_budget_tools
from keras_tflq.runtime.inspection import inspect_tflite
from keras_tflq.runtime.layer_error import GraphLayers

__all__ = [
    "BUDGET_MODES",
    "ScoreBudget",
    "budgeted",
    "build_budget",
    "check_max_drop",
    "export_within_budget",
    "mixed_precision_artifact",
    "require_budget_tools",
]

_EXPORT_OPTIONS = inspect.signature(export_artifact)


def budgeted(budget):
    """`export_within_budget` with `budget` bound: a drop-in for
    `keras_tflq.conversion.export.export_artifact`."""
    return functools.partial(export_within_budget, budget=budget)


def export_within_budget(model, path, mode, model_inputs, budget, **options):
    """Exports `model` in `mode`, raising layer precision until `budget` holds.

    The first candidate is the converter's artifact in `mode`, exactly what
    an export without `max_drop` writes; if it meets the budget nothing else
    is tried. Otherwise each step measures the per-layer error of the last
    candidate, ranks the layers by the error each adds to what it reads
    (its output's RMSE relative to range, minus the worst of its inputs'),
    and raises the costliest layer that can still go up by one step, with
    the layers that feed it (a 16-bit or float layer whose input was
    re-quantized to int8 gains nothing). Each candidate is quantized with
    `mixed_precision_artifact` and scored on the validation data. Once one
    meets the budget, the layers raised on the way are lowered back one at
    a time where the budget still holds. The smallest candidate that meets
    the budget is written; if none does, the most accurate one, with a
    warning.

    Args:
        model: The Keras model.
        path: The artifact's path.
        mode: `"int8"` or `"int16x8"`.
        model_inputs: The model's `ModelInputs`.
        budget: The `ScoreBudget`.
        **options: The keyword arguments of `export_artifact`, with its
            defaults (`calibration` and `evaluator` with `validation` are
            required here). `input_type` and `output_type` are those of
            the converter's artifact; a mixed artifact's inputs and outputs
            take the precision of the layers next to them. `verbose=1`
            prints one line per candidate.

    Returns:
        The report (a dict), with `layer_precision`, `budget_met`,
        `max_drop`, `reference_metrics`, `candidates` and `search`
        (`conversions`, `seconds`).

    Example:

    ```python
    export = budgeted(budget)  # in place of export_artifact
    report = export(model, path, "int8", model_inputs,
                    calibration=calibration, evaluator=evaluator,
                    validation=validation)
    report["layer_precision"]  # {"dense_in": "int8", "outlier": ...}
    ```
    """
    bound = _EXPORT_OPTIONS.bind(model, path, mode, model_inputs, **options)
    bound.apply_defaults()
    args = bound.arguments
    calibration, evaluator = args["calibration"], args["evaluator"]

    def evaluate(content):
        return evaluator.evaluate(content, args["validation"], model_inputs)

    started = time.perf_counter()
    base_content, base_inspection = convert_and_inspect(
        model,
        mode,
        representative_dataset=calibration.representative_dataset,
        input_type=args["input_type"],
        output_type=args["output_type"],
        allow_float_ops=args["allow_float_ops"],
        isolate=args["isolate"],
    )
    reference = budget.reference()
    conversions = 1
    candidates = [
        Candidate(
            {layer: mode for layer in _layer_names(model)},
            base_content,
            evaluate(base_content),
            budget,
            reference,
        )
    ]
    if not candidates[0].met:
        # The search starts from the float32 artifact and its layer graph.
        float_content, _ = convert_and_inspect(
            model, "float32", isolate=args["isolate"]
        )
        conversions += 1
        graph = _graph_of(model, float_content)
        search = PrecisionSearch(
            model, graph, float_content, calibration, budget, reference
        )
        candidates += search.run(
            candidates[0], mode, evaluate, verbose=args["verbose"]
        )
        conversions += search.conversions
    chosen = _choose(candidates, budget, reference, path)
    seconds = time.perf_counter() - started
    inspection = (
        base_inspection
        if chosen is candidates[0]
        else inspect_tflite(chosen.content)
    )
    report = build_report(
        model,
        path,
        chosen.content,
        inspection,
        mode,
        calibration=calibration,
        input_type=_io_type(inspection["inputs"], args["input_type"]),
        output_type=_io_type(inspection["outputs"], args["output_type"]),
        allow_float_ops=args["allow_float_ops"],
        epoch=args["epoch"],
        keras_metrics=args["keras_metrics"],
        tflite_metrics=chosen.scores,
        conversion_seconds=seconds,
    )
    report.update(
        layer_precision=dict(chosen.precision),
        budget_met=chosen.met,
        max_drop=dict(budget.max_drop),
        reference_metrics=reference,
        candidates=[c.describe(mode) for c in candidates],
        search={
            "conversions": conversions,
            "seconds": round(seconds, 3),
            "tool": "converter"
            if chosen is candidates[0]
            else "ai-edge-quantizer",
        },
    )
    write_with_report(path, chosen.content, report, args["amend_report"])
    return report


def _choose(candidates, budget, reference, path):
    """The smallest candidate that meets the budget, else (with a warning)
    the most accurate."""
    met = [c for c in candidates if c.met]
    if met:
        return min(met, key=lambda c: (c.bytes, c.raised_levels()))
    chosen = min(candidates, key=lambda c: (c.excess, c.bytes))
    warnings.warn(
        f"TFLiteExport: no artifact of {len(candidates)} tried meets "
        f"max_drop={budget.max_drop} (Keras scores "
        f"{format_scores(reference, budget.max_drop)}); wrote the most "
        f"accurate, scoring {format_scores(chosen.scores, budget.max_drop)}, "
        f"to {path}.",
        stacklevel=3,
    )
    return chosen


def _layer_names(model):
    """Every Keras layer but the inputs: a layer the artifact's op names
    do not mention (a recurrent model's, converted through a concrete
    function) cannot be raised and keeps the base precision."""
    import keras

    return [
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def _io_type(tensors, default):
    return tensors[0]["dtype"] if tensors else default


def _graph_of(model, content):
    from ai_edge_litert.interpreter import Interpreter

    return GraphLayers(model, Interpreter(model_content=content))
