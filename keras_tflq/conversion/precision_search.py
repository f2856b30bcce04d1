"""Accuracy-budgeted export: per-layer precision chosen to keep the score.

`TFLiteExport(..., max_drop={"accuracy": 0.01})` exports as usual; when the
integer artifact scores worse on the validation data than the Keras model by
more than the budget, the layers that cost most are raised one precision
step at a time (int8 -> int16 activations -> float), re-measured, and the
smallest artifact that meets the budget is written.

Mixed-precision artifacts are made with ai-edge-quantizer (AEQ), Google's
post-training quantizer for LiteRT: it takes the float32 artifact and a
recipe that gives each op, selected by a regex on its output tensor name,
8-bit or 16-bit activations (8-bit weights, per channel) or no
quantization, and inserts the QUANTIZE/DEQUANTIZE ops between layers of
different precision. The converter's own selective quantization
(`tf.lite.experimental.QuantizationDebugger` with `denylisted_nodes`) can
only keep ops in float, not give them 16-bit activations, and the
debugger fails on models not converted in its debug mode
(tensorflow#86949).
"""

import contextlib
import functools
import math
import os
import time
import warnings

import numpy as np

from keras_tflq.conversion.artifact import write_artifact
from keras_tflq.conversion.converter import convert_and_inspect
from keras_tflq.conversion.report import build_report
from keras_tflq.runtime.inspection import inspect_tflite
from keras_tflq.runtime.layer_error import PRECISIONS
from keras_tflq.runtime.layer_error import GraphLayers
from keras_tflq.runtime.layer_error import layer_errors

BUDGET_MODES = ("int8", "int16x8")
"""The modes `max_drop` applies to."""

_LAYER_SAMPLES = 64
_TOLERANCE = 1e-9


def check_max_drop(max_drop):
    """`max_drop` if it is `None` or a non-empty dict of name -> number >= 0.

    Raises:
        ValueError: For any other value, in the "Expected ... Received: ..."
            shape.
    """
    if max_drop is None:
        return None
    valid = isinstance(max_drop, dict) and bool(max_drop)
    if valid:
        for key, value in max_drop.items():
            number = isinstance(value, (int, float, np.number))
            if (
                not isinstance(key, str)
                or not key
                or isinstance(value, bool)
                or not number
                or not math.isfinite(float(value))
                or float(value) < 0
            ):
                valid = False
    if not valid:
        raise ValueError(
            "Expected `max_drop` to be a dict of compiled metric names (or "
            '"loss") to the most each may get worse, numbers >= 0, e.g. '
            f'{{"accuracy": 0.01}}. Received: max_drop={max_drop!r}'
        )
    return {key: float(value) for key, value in max_drop.items()}


def build_budget(max_drop, mode, model, evaluator, validation, model_inputs):
    """The `ScoreBudget` of `TFLiteExport(max_drop=...)` in `on_train_begin`,
    or `None` without `max_drop`.

    Raises:
        ValueError: `max_drop` in a float mode or on a quantization-aware
            model, no validation data to score on, or a key that is not a
            compiled metric (the message lists those available).
    """
    from keras_tflq.quantization import is_quantized_model

    if max_drop is None:
        return None
    if mode not in BUDGET_MODES or is_quantized_model(model):
        raise ValueError(
            f"Expected mode to be one of {BUDGET_MODES} on a float model "
            "with max_drop (a float mode has no precision to raise). "
            f"Received: mode={mode!r}, max_drop={max_drop}"
        )
    if validation is None or evaluator is None:
        raise ValueError(
            "Expected validation data to score the artifact against "
            "max_drop: pass validation_data= or validation_split= to fit() "
            f"(and keep evaluate on). Received: max_drop={max_drop} and no "
            "validation data to score on"
        )
    return ScoreBudget(max_drop, model, evaluator, validation, model_inputs)


class KerasPredictor:
    """The Keras model behind the `predict_on_batch(named_arrays)` of a
    `LiteRTModel`, so the evaluator scores both on the same terms."""

    def __init__(self, model, model_inputs):
        self.model = model
        self.names = list(model_inputs.names)

    def predict_on_batch(self, named):
        arrays = [named[name] for name in self.names]
        outputs = self.model.predict_on_batch(
            arrays[0] if len(arrays) == 1 else arrays
        )
        if isinstance(outputs, dict):
            return [np.asarray(v) for v in outputs.values()]
        if isinstance(outputs, (list, tuple)):
            return [np.asarray(v) for v in outputs]
        return np.asarray(outputs)


class ScoreBudget:
    """How much each budgeted metric may get worse, and in which direction.

    Built in `on_train_begin`: the model is scored on one validation batch
    so its compiled metrics exist, every key of `max_drop` is checked
    against them, and each metric's direction is read from the metric
    (`_direction`, as Keras' `MonitorCallback` does; `"loss"` goes down).

    Args:
        max_drop: The checked `{name: drop}` dict.
        model: The compiled Keras model.
        evaluator: The `ArtifactEvaluator` of `model`.
        validation: The validation `DataSource`.
        model_inputs: The model's `ModelInputs`.

    Example:

    >>> budget = ScoreBudget({"accuracy": 0.01}, model, evaluator, val, inputs)
    >>> budget.meets({"accuracy": 0.95}, {"accuracy": 0.955})
    True
    """

    def __init__(self, max_drop, model, evaluator, validation, model_inputs):
        self.max_drop = dict(max_drop)
        self.model = model
        self.evaluator = evaluator
        self.validation = validation
        self.model_inputs = model_inputs
        first = _FirstBatch(validation)
        evaluator.evaluate_predictor(
            KerasPredictor(model, model_inputs), first, model_inputs
        )
        directions = {"loss": "down"}
        for metric in evaluator.metrics:
            direction = getattr(metric, "_direction", None)
            if metric.name != "loss" and direction in ("up", "down"):
                directions[metric.name] = direction
            elif metric.name != "loss":
                directions.setdefault(metric.name, None)
        unknown = [k for k in self.max_drop if k not in directions]
        if unknown:
            raise ValueError(
                "Expected every `max_drop` key to be a compiled metric name or "
                f'"loss". Received: {unknown[0]!r}; available: '
                f"{sorted(directions)}"
            )
        undirected = [k for k in self.max_drop if directions[k] is None]
        if undirected:
            raise ValueError(
                "Expected `max_drop` metrics whose direction is known (Keras "
                "metric classes set `_direction`). Received: "
                f"{undirected[0]!r} without one; budget a Keras metric or "
                '"loss" instead'
            )
        self.directions = {k: directions[k] for k in self.max_drop}

    def reference(self):
        """The Keras model's scores on the validation data."""
        return self.evaluator.evaluate_predictor(
            KerasPredictor(self.model, self.model_inputs),
            self.validation,
            self.model_inputs,
        )

    def drops(self, scores, reference):
        """`{name: how much worse than the reference}` (negative: better)."""
        return {
            key: (reference[key] - scores[key])
            if self.directions[key] == "up"
            else (scores[key] - reference[key])
            for key in self.max_drop
        }

    def meets(self, scores, reference):
        """`True` when every budgeted metric is within its budget."""
        return all(
            drop <= self.max_drop[key] + _TOLERANCE
            for key, drop in self.drops(scores, reference).items()
        )

    def excess(self, scores, reference):
        """How far over budget, summed over metrics relative to each budget
        (0 when met): orders candidates by accuracy."""
        return sum(
            max(0.0, drop - self.max_drop[key])
            / max(self.max_drop[key], abs(reference[key]), 1e-12)
            for key, drop in self.drops(scores, reference).items()
        )


class _FirstBatch:
    """A `DataSource`-like view of the first batch of one."""

    def __init__(self, source):
        self.name = source.name
        self._source = source

    def batches(self):
        for batch in self._source.batches():
            yield batch
            return

    def num_batches(self):
        return 1

    def describe(self):
        return self._source.describe()


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
    import re

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


def budgeted(budget):
    """`export_within_budget` with `budget` bound: a drop-in for
    `keras_tflq.conversion.export.export_artifact`."""
    return functools.partial(export_within_budget, budget=budget)


def export_within_budget(
    model,
    path,
    mode,
    model_inputs,
    calibration=None,
    input_type="int8",
    output_type="int8",
    allow_float_ops=False,
    evaluator=None,
    validation=None,
    epoch=None,
    keras_metrics=None,
    verbose=0,
    isolate=None,
    budget=None,
):
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
        calibration: The `CalibrationSet`. Defaults to `None`.
        input_type: Input tensor type of the converter's artifact (a mixed
            artifact's I/O take the precision of the layers next to them).
            Defaults to `"int8"`.
        output_type: Output tensor type, as `input_type`.
            Defaults to `"int8"`.
        allow_float_ops: Allow float fallback in the converter's artifact.
            Defaults to `False`.
        evaluator: The `ArtifactEvaluator`. Defaults to `None`.
        validation: The validation `DataSource`. Defaults to `None`.
        epoch: The 1-based epoch, for the report. Defaults to `None`.
        keras_metrics: The Keras logs at export. Defaults to `None`.
        verbose: `1` prints one line per candidate. Defaults to `0`.
        isolate: Convert in a child process (`isolate_conversion`).
            Defaults to `None` (in process).
        budget: The `ScoreBudget`. Defaults to `None` (required).

    Returns:
        The report (a dict), with `layer_precision`, `budget_met`,
        `max_drop`, `reference_metrics`, `candidates` and `search`
        (`conversions`, `seconds`).
    """
    started = time.perf_counter()
    base_content, base_inspection = convert_and_inspect(
        model,
        mode,
        representative_dataset=calibration.representative_dataset,
        input_type=input_type,
        output_type=output_type,
        allow_float_ops=allow_float_ops,
        isolate=isolate,
    )
    conversions = 1
    reference = budget.reference()
    base_scores = evaluator.evaluate(base_content, validation, model_inputs)
    float_content, _ = convert_and_inspect(model, "float32", isolate=isolate)
    conversions += 1
    graph = _graph_of(model, float_content)
    base_precision = {layer: mode for layer in graph.layers}
    candidates = [
        _Candidate(base_precision, base_content, base_scores, budget, reference)
    ]
    if not candidates[0].met:
        search = _Search(model, graph, float_content, mode, calibration, budget)
        search.evaluate = lambda content: evaluator.evaluate(
            content, validation, model_inputs
        )
        search.reference = reference
        search.verbose = verbose
        candidates += search.run(candidates[0])
        conversions += search.conversions
    met = [c for c in candidates if c.met]
    if met:
        chosen = min(met, key=lambda c: (c.bytes, c.raised_levels()))
    else:
        chosen = min(candidates, key=lambda c: (c.excess, c.bytes))
        warnings.warn(
            f"TFLiteExport: no artifact of {len(candidates)} tried meets "
            f"max_drop={budget.max_drop} (Keras scores "
            f"{_fmt(reference, budget.max_drop)}); wrote the most accurate, "
            f"scoring {_fmt(chosen.scores, budget.max_drop)}, to {path}.",
            stacklevel=2,
        )
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
        input_type=inspection["inputs"][0]["dtype"]
        if inspection["inputs"]
        else input_type,
        output_type=inspection["outputs"][0]["dtype"]
        if inspection["outputs"]
        else output_type,
        allow_float_ops=allow_float_ops,
        epoch=epoch,
        keras_metrics=keras_metrics,
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
    write_artifact(path, chosen.content, report)
    return report


def _graph_of(model, content):
    from ai_edge_litert.interpreter import Interpreter

    return GraphLayers(model, Interpreter(model_content=content))


def _fmt(scores, keys):
    return ", ".join(f"{k}={scores[k]:.4f}" for k in keys)


class _Candidate:
    def __init__(self, precision, content, scores, budget, reference):
        self.precision = dict(precision)
        self.content = content
        self.scores = scores
        self.bytes = len(content)
        self.met = budget.meets(scores, reference)
        self.excess = budget.excess(scores, reference)

    def raised_levels(self):
        return sum(PRECISIONS.index(p) for p in self.precision.values())

    def describe(self, mode):
        counts = {p: 0 for p in PRECISIONS}
        for precision in self.precision.values():
            counts[precision] += 1
        return {
            "layer_precision": counts,
            "raised": {k: v for k, v in self.precision.items() if v != mode},
            "score": self.scores,
            "bytes": self.bytes,
            "budget_met": self.met,
        }


class _Search:
    """The greedy raise-then-lower search of `export_within_budget`."""

    def __init__(self, model, graph, float_content, mode, calibration, budget):
        self.model = model
        self.graph = graph
        self.float_content = float_content
        self.mode = mode
        self.calibration = calibration
        self.budget = budget
        self.conversions = 0
        self.evaluate = None
        self.reference = None
        self.verbose = 0
        self._seen = set()
        samples = list(calibration.representative_dataset())[:_LAYER_SAMPLES]
        self._layer_x = {
            name: np.concatenate([s[name] for s in samples])
            for name in samples[0]
        }

    def run(self, start):
        tried = []
        current = start
        self._seen.add(_key(start.precision))
        while not current.met:
            try:
                precision = self._raise_costliest(current)
            except Exception as error:  # Never lose the export to a ranking.
                warnings.warn(
                    "TFLiteExport: the per-layer error of a candidate could "
                    f"not be measured ({type(error).__name__}: {error}); the "
                    "precision search stops with the candidates it has.",
                    stacklevel=3,
                )
                break
            if precision is None:
                break
            candidate = self._try(precision)
            if candidate is None:
                break
            tried.append(candidate)
            current = candidate
        if current.met:
            tried += self._lower(current)
        return tried

    def _raise_costliest(self, candidate):
        errors = {
            e["layer"]: e["relative_rmse"]
            for e in layer_errors(self.model, candidate.content, self._layer_x)
        }
        producers = self.graph.producers

        def cost(layer):
            own = errors.get(layer, 0.0)
            inputs = [errors.get(p, 0.0) for p in producers.get(layer, ())]
            return own - max(inputs, default=0.0)

        top = PRECISIONS.index("float32")
        for layer in sorted(self.graph.layers, key=cost, reverse=True):
            level = PRECISIONS.index(candidate.precision[layer])
            if level == top:
                continue
            raised = dict(candidate.precision)
            new = PRECISIONS[level + 1]
            raised[layer] = new
            for producer in producers.get(layer, ()):
                if PRECISIONS.index(raised[producer]) < level + 1:
                    raised[producer] = new
            if _key(raised) not in self._seen:
                return raised
        return None

    def _lower(self, best):
        """Lowers raised layers one step at a time while the budget holds."""
        tried = []
        base = PRECISIONS.index(self.mode)
        order = sorted(
            (
                layer
                for layer, p in best.precision.items()
                if PRECISIONS.index(p) > base
            ),
            key=lambda layer: -PRECISIONS.index(best.precision[layer]),
        )
        for layer in order:
            lowered = dict(best.precision)
            lowered[layer] = PRECISIONS[PRECISIONS.index(lowered[layer]) - 1]
            if _key(lowered) in self._seen:
                continue
            candidate = self._try(lowered)
            if candidate is None:
                break
            tried.append(candidate)
            if candidate.met and candidate.bytes <= best.bytes:
                best = candidate
        return tried

    def _try(self, precision):
        self._seen.add(_key(precision))
        try:
            content = mixed_precision_artifact(
                self.float_content,
                self.graph,
                precision,
                self.mode,
                self.calibration,
            )
        except Exception as error:  # AEQ raises several unrelated types.
            warnings.warn(
                "TFLiteExport: ai-edge-quantizer could not quantize "
                f"layer_precision={precision}: {error}; the precision search "
                "stops with the candidates it has.",
                stacklevel=3,
            )
            return None
        self.conversions += 1
        scores = self.evaluate(content)
        candidate = _Candidate(
            precision, content, scores, self.budget, self.reference
        )
        if self.verbose:
            raised = {k: v for k, v in precision.items() if v != self.mode}
            print(
                f"TFLiteExport: candidate {raised}: "
                f"{_fmt(scores, self.budget.max_drop)}, {candidate.bytes} "
                f"bytes{', within budget' if candidate.met else ''}"
            )
        return candidate


def _key(precision):
    return tuple(sorted(precision.items()))


def require_budget_tools():
    """Raises a `ValueError` unless ai-edge-quantizer is importable."""
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError as error:
        raise ValueError(
            "Expected ai-edge-quantizer to be installed for `max_drop` "
            "(pip install keras-tflq[budget]). Received: "
            f"ImportError: {error}"
        ) from None
