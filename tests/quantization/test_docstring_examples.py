"""Every Example in the quantization docstrings runs."""

import inspect

import pytest

import keras_tflq as tflq
from keras_tflq.callbacks import quantization_schedule
from keras_tflq.quantization import quantize
from keras_tflq.quantization import quantize_annotate
from keras_tflq.quantization import quantize_config
from keras_tflq.quantization import quantize_wrapper
from keras_tflq.quantization import quantizers
from keras_tflq.quantization import relu_fake_quant
from keras_tflq.quantization.default_scheme import attention_configs
from keras_tflq.quantization.default_scheme import batch_norm
from keras_tflq.quantization.default_scheme import channel_affine
from keras_tflq.quantization.default_scheme import conv_batchnorm_fold
from keras_tflq.quantization.default_scheme import default_quantize_config
from keras_tflq.quantization.default_scheme import fixed_range
from keras_tflq.quantization.default_scheme import gate_quantizer
from keras_tflq.quantization.default_scheme import layer_normalization
from keras_tflq.quantization.default_scheme import multi_head_attention
from keras_tflq.quantization.default_scheme import sequence_configs
from keras_tflq.quantization.default_scheme import softmax_output
from keras_tflq.quantization.default_scheme import time_distributed_config
from tests.helpers.docstrings import documented
from tests.helpers.docstrings import run_example

MODULES = [
    quantization_schedule,
    quantize,
    quantize_annotate,
    quantize_config,
    quantize_wrapper,
    quantizers,
    relu_fake_quant,
    batch_norm,
    channel_affine,
    conv_batchnorm_fold,
    default_quantize_config,
    gate_quantizer,
    fixed_range,
    sequence_configs,
    attention_configs,
    layer_normalization,
    multi_head_attention,
    softmax_output,
    time_distributed_config,
]


EXAMPLES = documented(MODULES)


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
    ran, failed = run_example(obj)
    assert ran >= 1, f"{obj.__qualname__}: an Example with no code"
    assert failed == 0, f"{obj.__qualname__}: see the doctest output above"
