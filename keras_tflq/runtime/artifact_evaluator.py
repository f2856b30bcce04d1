"""Scoring a TFLite artifact with the loss and metrics its Keras model was
compiled with."""

import warnings

import keras

from keras_tflq.runtime.litert_model import LiteRTModel


class ArtifactEvaluator:
    """Evaluates a TFLite artifact with the Keras model's own compiled loss and
    metrics.

    The artifact's predictions are scored by a small Keras model that only
    passes its inputs through, compiled from `model.get_compile_config()`:
    the loss, metrics, weighted metrics and loss weights mean exactly what
    they mean in `model.evaluate()`, with the same names (so `accuracy`
    resolves to the same sparse or categorical accuracy).

    Args:
        model: The compiled Keras model the artifact was converted from.

    Example:

    ```python
    import keras, numpy as np
    from keras_tflq.conversion.converter import convert_model
    from keras_tflq.conversion.data_source import DataSource
    from keras_tflq.conversion.model_inputs import ModelInputs
    from keras_tflq.runtime.artifact_evaluator import ArtifactEvaluator

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x_val, y_val = np.random.rand(32, 8), np.random.randint(0, 3, 32)
    scores = ArtifactEvaluator(model).evaluate(
        convert_model(model, "float32"),
        DataSource((x_val, y_val)),
        ModelInputs(model),
    )
    print(scores)  # the compiled loss and metrics, scored on the artifact
    ```
    """

    def __init__(self, model):
        compile_config = model.get_compile_config() if model.compiled else None
        if not compile_config or compile_config.get("loss") is None:
            raise ValueError(
                "Expected a model compiled with a loss to evaluate the "
                "artifact. "
                f"Received: model={model.name!r} with compile config "
                f"{compile_config}"
            )
        outputs = keras.tree.flatten(model.outputs)
        names = getattr(model, "output_names", None) or [
            f"output_{i}" for i in range(len(outputs))
        ]
        inputs = [
            keras.Input(shape=tuple(t.shape[1:]), name=f"tflite_prediction_{i}")
            for i, t in enumerate(outputs)
        ]
        passed = [
            keras.layers.Identity(name=name)(x)
            for name, x in zip(names, inputs, strict=False)
        ]
        self._scorer = keras.Model(
            inputs if len(inputs) > 1 else inputs[0],
            passed if len(passed) > 1 else passed[0],
            name=f"{model.name}_tflite_scorer",
        )
        self._scorer.compile_from_config(compile_config)

    def evaluate(self, model_content, source, model_inputs, verbose=0):
        """Runs the artifact on every batch of `source` and returns `{metric:
        value}`.

        Args:
            model_content: The TFLite flatbuffer bytes.
            source: A `DataSource` yielding `(x, y, sample_weight)` batches.
            model_inputs: The `ModelInputs` of the Keras model.
            verbose: Show a progress bar. Defaults to `0`.
        """
        litert_model = LiteRTModel(model_content=model_content)
        return self.evaluate_predictor(
            litert_model, source, model_inputs, verbose
        )

    def evaluate_predictor(self, predictor, source, model_inputs, verbose=0):
        """`evaluate` for anything with `predict_on_batch(named_arrays)`.

        Args:
            predictor: An object whose `predict_on_batch` takes a dict of
                arrays keyed by input name (a `LiteRTModel`, or a wrapper
                of the Keras model to score it on the same terms).
            source: A `DataSource` yielding `(x, y, sample_weight)` batches.
            model_inputs: The `ModelInputs` of the Keras model.
            verbose: Show a progress bar. Defaults to `0`.
        """
        litert_model = predictor

        def scored_batches():
            for x, y, sample_weight in source.batches():
                if y is None:
                    raise ValueError(
                        "Expected targets in the evaluation data. "
                        f"Received: {source.describe()} yielding inputs only"
                    )
                predicted = litert_model.predict_on_batch(
                    model_inputs.to_named_arrays(x, source.name)
                )
                batch = (
                    (predicted, y)
                    if sample_weight is None
                    else (predicted, y, sample_weight)
                )
                # Keras' generator adapter takes tuples, not lists, for several
                # outputs.
                yield keras.tree.lists_to_tuples(batch)

        with warnings.catch_warnings():
            # A source of unknown length ends by running out of data, as
            # intended.
            warnings.filterwarnings(
                "ignore", message="Your input ran out of data"
            )
            logs = self._scorer.evaluate(
                scored_batches(),
                steps=source.num_batches(),
                verbose=verbose,
                return_dict=True,
            )
        return {name: float(value) for name, value in logs.items()}

    @property
    def metrics(self):
        """The scorer's metric objects, flattened (after one evaluation)."""
        found, stack = [], list(self._scorer.metrics)
        while stack:
            metric = stack.pop(0)
            inner = getattr(metric, "metrics", None)
            if isinstance(inner, (list, tuple)) and inner:
                stack[:0] = list(inner)
            else:
                found.append(metric)
        return found
