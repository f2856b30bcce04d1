"""keras_tflq: from Keras 3 training to a deployable TensorFlow Lite artifact.

The public API lives here and only here; submodules are implementation.

Example:

```python
import keras_tflq as tflq

model.fit(x, y, validation_split=0.1,
          callbacks=[tflq.TFLiteExport(mode="int8")])
```
"""

from keras_tflq.callbacks.quantization_schedule import QuantizationSchedule
from keras_tflq.callbacks.tflite_export import TFLiteExport
from keras_tflq.conversion.errors import ConversionError
from keras_tflq.conversion.export import export_tflite
from keras_tflq.conversion.modes import MODES
from keras_tflq.quantization import quantizers
from keras_tflq.quantization.quantize import quantize_annotate_layer
from keras_tflq.quantization.quantize import quantize_annotate_model
from keras_tflq.quantization.quantize import quantize_apply
from keras_tflq.quantization.quantize import quantize_model
from keras_tflq.quantization.quantize_config import QuantizeConfig
from keras_tflq.runtime.inspection import inspect_tflite
from keras_tflq.runtime.litert_model import LiteRTModel
from keras_tflq.version import __version__

__all__ = [
    "ConversionError",
    "LiteRTModel",
    "MODES",
    "QuantizationSchedule",
    "QuantizeConfig",
    "TFLiteExport",
    "export_tflite",
    "inspect_tflite",
    "__version__",
    "quantize_annotate_layer",
    "quantize_annotate_model",
    "quantize_apply",
    "quantize_model",
    "quantizers",
]
