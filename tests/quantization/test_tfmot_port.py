"""tfmot's custom-layer QuantizeConfig example runs with import changes only."""

import re
from pathlib import Path

import keras
import numpy as np
from qat_helpers import convert
from qat_helpers import tensor_types

import keras_tflq as tflq

DOC = Path(__file__).parents[2] / "docs" / "porting_from_tfmot.md"


def _ported_example():
    """The example code block of docs/porting_from_tfmot.md, run."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    namespace = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)  # noqa: S102
    return namespace["quant_aware_model"], namespace


def test_ported_example_trains_saves_reloads_and_converts(tmp_path):
    model, namespace = _ported_example()
    assert tflq.quantization.is_quantized_model(model)
    x = np.random.default_rng(0).random((64, 20), dtype="float32")
    y = np.random.default_rng(1).random((64, 20), dtype="float32")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=2, verbose=0)

    path = tmp_path / "ported.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    reloaded.fit(x, y, epochs=1, verbose=0)

    assert set(tensor_types(convert(reloaded)).values()) <= {"int8", "int32"}


def test_ported_config_quantizes_kernel_and_activation():
    model, namespace = _ported_example()
    config_class = namespace["DefaultDenseQuantizeConfig"]
    (wrapper,) = [
        layer
        for layer in model.layers
        if isinstance(getattr(layer, "quantize_config", None), config_class)
    ]
    names = sorted(
        v.path.split("/")[-1] for v in wrapper.non_trainable_variables
    )
    assert names == [
        "activation0_initialized",
        "activation0_max",
        "activation0_min",
        "kernel_max",
        "kernel_min",
        "quantize_enabled",
        "ranges_frozen",
    ]
