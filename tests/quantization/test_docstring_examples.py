"""Every Example in the quantization docstrings runs."""

import doctest
import inspect
import re

import pytest

import keras_tflq as tflq
from keras_tflq.callbacks import quantization_schedule
from keras_tflq.quantization import quantize
from keras_tflq.quantization import quantize_annotate
from keras_tflq.quantization import quantize_config
from keras_tflq.quantization import quantize_wrapper
from keras_tflq.quantization import quantizers
from keras_tflq.quantization.default_scheme import attention_configs
from keras_tflq.quantization.default_scheme import channel_affine
from keras_tflq.quantization.default_scheme import conv_batchnorm_fold
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme import sequence_configs

MODULES = [
    quantization_schedule,
    quantize,
    quantize_annotate,
    quantize_config,
    quantize_wrapper,
    quantizers,
    channel_affine,
    conv_batchnorm_fold,
    default_quantize_config,
    sequence_configs,
    attention_configs,
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


def test_every_public_name_has_an_example():
    public = [
        tflq.quantize_annotate_layer,
        tflq.quantize_annotate_model,
        tflq.quantize_apply,
        tflq.quantize_model,
        tflq.QuantizeConfig,
        tflq.QuantizationSchedule,
        tflq.quantizers.LastValueQuantizer,
        tflq.quantizers.MovingAverageQuantizer,
        tflq.quantizers.AllValuesQuantizer,
        tflq.quantization.is_quantized_model,
    ]
    for obj in public:
        assert "Example:" in obj.__doc__, obj.__name__
        assert "Args:" in obj.__doc__ or inspect.isclass(obj), obj.__name__


@pytest.mark.parametrize("obj", EXAMPLES.values(), ids=EXAMPLES.keys())
def test_example_runs(obj):
    example = obj.__doc__.split("Example:", 1)[1]
    namespace = dict(vars(inspect.getmodule(obj)))
    blocks = re.findall(r"```python\n(.*?)```", example, re.S)
    for block in blocks:
        exec(compile(inspect.cleandoc(block), obj.__name__, "exec"), namespace)  # noqa: S102
    if ">>>" in example:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(example, namespace, obj.__name__, None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test)
        assert runner.failures == 0
    assert blocks or ">>>" in example
