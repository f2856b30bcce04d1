"""Every Example in the callbacks, conversion and runtime docstrings runs."""

import doctest
import inspect
import re

import pytest

from keras_tflq.callbacks import fit_validation_data
from keras_tflq.callbacks import tflite_export
from keras_tflq.conversion import artifact
from keras_tflq.conversion import calibration
from keras_tflq.conversion import converter
from keras_tflq.conversion import data_source
from keras_tflq.conversion import export
from keras_tflq.conversion import int16x8_bias
from keras_tflq.conversion import model_inputs
from keras_tflq.conversion import modes
from keras_tflq.conversion import report
from keras_tflq.runtime import artifact_evaluator
from keras_tflq.runtime import inspection
from keras_tflq.runtime import litert_model

# quantization_schedule's example runs in
# tests/quantization/test_docstring_examples.py.
MODULES = [
    fit_validation_data,
    tflite_export,
    artifact,
    calibration,
    converter,
    data_source,
    export,
    int16x8_bias,
    model_inputs,
    modes,
    report,
    artifact_evaluator,
    inspection,
    litert_model,
]


def _documented(module):
    for name, obj in vars(module).items():
        if (
            (inspect.isclass(obj) or inspect.isfunction(obj))
            and obj.__module__ == module.__name__
            and obj.__doc__
            and "Example:" in obj.__doc__
        ):
            yield f"{module.__name__.split('.')[-1]}.{name}", obj


EXAMPLES = dict(item for module in MODULES for item in _documented(module))


def test_every_module_has_examples_collected():
    documented = {key.split(".")[0] for key in EXAMPLES}
    assert documented == {m.__name__.split(".")[-1] for m in MODULES}


@pytest.mark.parametrize("obj", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_example_runs(obj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples write their artifacts here
    example = obj.__doc__.split("Example:", 1)[1]
    namespace = {"__name__": "docstring_example"}
    blocks = re.findall(r"```python\n(.*?)```", example, re.S)
    for block in blocks:
        code = compile(inspect.cleandoc(block), obj.__qualname__, "exec")
        exec(code, namespace)  # noqa: S102
    if ">>>" in example:
        namespace.update(vars(inspect.getmodule(obj)))
        parser = doctest.DocTestParser()
        test = parser.get_doctest(example, namespace, obj.__name__, None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.failures == 0
    assert blocks or ">>>" in example
