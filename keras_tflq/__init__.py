"""keras_tflq: from Keras 3 training to a deployable TensorFlow Lite artifact.

The public API lives here: every name in `__all__` is importable from
`keras_tflq`, and submodules are implementation. The names load on first
use (PEP 562), so `import keras_tflq` and `keras-tflq --help` do not import
TensorFlow. The quantization layers are registered as soon as Keras is
loaded (at once if it already is), so a saved QAT model reloads with plain
`keras.saving.load_model` after `import keras_tflq`, in either order.

Example:

```python
import keras_tflq as tflq

model.fit(x, y, validation_split=0.1,
          callbacks=[tflq.TFLiteExport(mode="int8")])
```
"""

import importlib
import importlib.abc
import importlib.util
import sys

from keras_tflq.conversion.errors import ConversionError
from keras_tflq.version import __version__

# Public name -> the module that defines it (imported on first use).
_LAZY = {
    "EmbeddingQuantizeConfig": "keras_tflq.quantization",
    "RecurrentQuantizeConfig": "keras_tflq.quantization",
    "RecurrentWeightsQuantizeConfig": "keras_tflq.quantization",
    "LiteRTModel": "keras_tflq.runtime.litert_model",
    "MODES": "keras_tflq.conversion.modes",
    "QuantizationSchedule": "keras_tflq.callbacks.quantization_schedule",
    "QuantizeConfig": "keras_tflq.quantization",
    "TFLiteExport": "keras_tflq.callbacks.tflite_export",
    "export_tflite": "keras_tflq.conversion.export",
    "inspect_tflite": "keras_tflq.runtime.inspection",
    "is_quantized_model": "keras_tflq.quantization",
    "quantize_annotate_layer": "keras_tflq.quantization",
    "quantize_annotate_model": "keras_tflq.quantization",
    "quantize_apply": "keras_tflq.quantization",
    "quantize_model": "keras_tflq.quantization",
    "quantizers": "keras_tflq.quantization",
    "widen_int16x8_conv_bias": "keras_tflq.conversion.int16x8_bias",
}

__all__ = [
    "ConversionError",
    "EmbeddingQuantizeConfig",
    "LiteRTModel",
    "MODES",
    "QuantizationSchedule",
    "QuantizeConfig",
    "RecurrentQuantizeConfig",
    "RecurrentWeightsQuantizeConfig",
    "TFLiteExport",
    "__version__",
    "export_tflite",
    "inspect_tflite",
    "is_quantized_model",
    "quantize_annotate_layer",
    "quantize_annotate_model",
    "quantize_apply",
    "quantize_model",
    "quantizers",
    "widen_int16x8_conv_bias",
]


# Subpackages stay reachable as attributes (`keras_tflq.runtime...`).
_SUBMODULES = (
    "argument_checks",
    "callbacks",
    "cli",
    "conversion",
    "quantization",
    "runtime",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_tflq.{name}")
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'keras_tflq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Registers the QAT classes right after Keras is first imported.

    `import keras_tflq` does not import Keras, yet a saved QAT model must
    reload with plain `keras.saving.load_model` whatever the import order:
    this finder wraps the loading of `keras` once, then removes itself.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            importlib.import_module("keras_tflq.quantization")

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    # Keras (hence TensorFlow) is loaded already, so registering the
    # serializable QAT classes costs nothing: `load_model` then finds them.
    importlib.import_module("keras_tflq.quantization")
elif not any(
    isinstance(finder, _RegisterWhenKerasLoads) for finder in sys.meta_path
):
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
