"""The budget of `TFLiteExport(max_drop=...)`: how much each metric may get
worse, checked against the compiled metrics, and how scores compare to it."""

import math

import numpy as np

BUDGET_MODES = ("int8", "int16x8")
"""The modes `max_drop` applies to."""

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
