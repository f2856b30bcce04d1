"""The candidates of the `max_drop` search, and the greedy search over
per-layer precision that makes them."""

import warnings

import numpy as np

from keras_tflq.conversion.mixed_precision import mixed_precision_artifact
from keras_tflq.runtime.layer_error import PRECISIONS
from keras_tflq.runtime.layer_error import layer_errors

_LAYER_SAMPLES = 64


class Candidate:
    """One artifact of the search: its per-layer precision, bytes, scores
    and whether they meet the budget."""

    def __init__(self, precision, content, scores, budget, reference):
        self.precision = dict(precision)
        self.content = content
        self.scores = scores
        self.bytes = len(content)
        self.met = budget.meets(scores, reference)
        self.excess = budget.excess(scores, reference)

    def raised_levels(self):
        """How many precision steps above int8, summed over the layers."""
        return sum(PRECISIONS.index(p) for p in self.precision.values())

    def describe(self, mode):
        """The candidate in the report: precision counts, the layers
        raised above `mode`, scores, bytes and whether it met the budget."""
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


class PrecisionSearch:
    """The greedy raise-then-lower search of `export_within_budget`.

    Args:
        model: The Keras model.
        graph: The `GraphLayers` of its float32 artifact.
        float_content: The float32 artifact's bytes.
        calibration: The `CalibrationSet`.
        budget: The `ScoreBudget`.
        reference: The Keras model's scores.
    """

    def __init__(
        self, model, graph, float_content, calibration, budget, reference
    ):
        self.model = model
        self.graph = graph
        self.float_content = float_content
        self.calibration = calibration
        self.budget = budget
        self.reference = reference
        self.mode = None
        self.evaluate = None
        self.verbose = 0
        self.conversions = 0
        self._seen = set()
        samples = list(calibration.representative_dataset())[:_LAYER_SAMPLES]
        self._layer_x = {
            name: np.concatenate([s[name] for s in samples])
            for name in samples[0]
        }

    def run(self, start, mode, evaluate, verbose=0):
        """The candidates tried after `start`, the converter's artifact in
        `mode`; `evaluate(content)` scores one on the validation data and
        `verbose=1` prints a line per candidate."""
        self.mode, self.evaluate, self.verbose = mode, evaluate, verbose
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
        candidate = Candidate(
            precision, content, scores, self.budget, self.reference
        )
        if self.verbose:
            raised = {k: v for k, v in precision.items() if v != self.mode}
            print(
                f"TFLiteExport: candidate {raised}: "
                f"{format_scores(scores, self.budget.max_drop)}, "
                f"{candidate.bytes} bytes"
                f"{', within budget' if candidate.met else ''}"
            )
        return candidate


def _key(precision):
    return tuple(sorted(precision.items()))


def format_scores(scores, keys):
    """`"accuracy=0.9512, loss=0.1834"` for the budgeted `keys`."""
    return ", ".join(f"{k}={scores[k]:.4f}" for k in keys)
