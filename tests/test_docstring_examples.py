"""Every Example in the callbacks, conversion and runtime docstrings runs."""

import pytest

from keras_tflq.callbacks import fit_validation_data
from keras_tflq.callbacks import tflite_export
from keras_tflq.conversion import artifact
from keras_tflq.conversion import calibration
from keras_tflq.conversion import converter
from keras_tflq.conversion import data_source
from keras_tflq.conversion import embedding_export
from keras_tflq.conversion import export
from keras_tflq.conversion import int16x8_bias
from keras_tflq.conversion import layer_calls
from keras_tflq.conversion import lstm_state
from keras_tflq.conversion import micro_sources
from keras_tflq.conversion import model_inputs
from keras_tflq.conversion import modes
from keras_tflq.conversion import report
from keras_tflq.conversion import sequence_checks
from keras_tflq.runtime import artifact_evaluator
from keras_tflq.runtime import inspection
from keras_tflq.runtime import litert_model
from keras_tflq.runtime.micro import arena
from keras_tflq.runtime.micro import micro_model
from keras_tflq.runtime.micro import ops
from tests.helpers.docstrings import documented
from tests.helpers.docstrings import run_example

# quantization_schedule's example runs in
# tests/quantization/test_docstring_examples.py.
MODULES = [
    fit_validation_data,
    tflite_export,
    artifact,
    calibration,
    converter,
    data_source,
    embedding_export,
    export,
    micro_sources,
    int16x8_bias,
    layer_calls,
    lstm_state,
    model_inputs,
    modes,
    report,
    sequence_checks,
    artifact_evaluator,
    inspection,
    litert_model,
    arena,
    micro_model,
    ops,
]


EXAMPLES = documented(MODULES)


def test_every_module_has_examples_collected():
    modules = {key.split(".")[0] for key in EXAMPLES}
    assert modules == {m.__name__.split(".")[-1] for m in MODULES}


@pytest.mark.parametrize("obj", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_example_runs(obj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write their artifacts here
    ran, failed = run_example(obj)
    assert ran >= 1, f"{obj.__qualname__}: an Example with no code"
    assert failed == 0, f"{obj.__qualname__}: see the doctest output above"
