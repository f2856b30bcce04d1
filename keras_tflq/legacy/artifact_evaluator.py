"""Scoring a TFLite artifact with a `tf_keras` model's loss and metrics."""

import sys

from keras_tflq.legacy.tf_keras_models import is_tf_keras_model
from keras_tflq.runtime.artifact_evaluator import ArtifactEvaluator


def evaluator_for(model):
    """The artifact evaluator for `model`: `tf_keras` or Keras 3.

    Example:

    >>> evaluator = evaluator_for(model)
    """
    if is_tf_keras_model(model):
        return TfKerasArtifactEvaluator(model)
    return ArtifactEvaluator(model)


class TfKerasArtifactEvaluator(ArtifactEvaluator):
    """`ArtifactEvaluator` for a model compiled by `tf_keras`.

    A `tf_keras` compile config names `tf_keras` losses and metrics, so
    the pass-through scorer is a `tf_keras` model compiled from it: the
    artifact's scores mean what the model's own `evaluate()` means.

    Args:
        model: The compiled `tf_keras` model the artifact comes from.

    Example:

    >>> evaluator = TfKerasArtifactEvaluator(tf_keras_model)
    >>> evaluator.evaluate(tflite_bytes, source, model_inputs)
    {'accuracy': 0.97, 'loss': 0.11}
    """

    def __init__(self, model):
        tf_keras = sys.modules["tf_keras"]  # loaded: `model` is one of its
        compile_config = (
            model.get_compile_config()
            if getattr(model, "_is_compiled", False)
            else None
        )
        if not compile_config or compile_config.get("loss") is None:
            raise ValueError(
                "Expected a model compiled with a loss to evaluate the "
                f"artifact. Received: model={model.name!r} with compile "
                f"config {compile_config}"
            )
        outputs = model.outputs
        inputs = [
            tf_keras.Input(
                shape=tuple(t.shape[1:]), name=f"tflite_prediction_{i}"
            )
            for i, t in enumerate(outputs)
        ]
        passed = [
            tf_keras.layers.Activation("linear", name=name)(x)
            for name, x in zip(model.output_names, inputs, strict=True)
        ]
        self._scorer = tf_keras.Model(
            inputs if len(inputs) > 1 else inputs[0],
            passed if len(passed) > 1 else passed[0],
            name=f"{model.name}_tflite_scorer",
        )
        self._scorer.compile_from_config(compile_config)
