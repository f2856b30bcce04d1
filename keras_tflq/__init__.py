"""keras_tflq: from Keras 3 training to a deployable TensorFlow Lite artifact.

The public API lives here and only here; submodules are implementation.

Example:

```python
import keras_tflq as tflq

model.fit(x, y, validation_split=0.1,
          callbacks=[tflq.TFLiteExport(mode="int8")])
```
"""

from keras_tflq.version import __version__

__all__ = [
    "__version__",
]
