"""Running a TFLite artifact on TensorFlow Lite Micro (TFLM), on the host.

TFLM is the runtime of microcontrollers. An artifact that LiteRT runs can
still fail there: TFLM has a smaller set of ops, no hybrid (dynamic-range)
kernels, no float16 weights, and a fixed tensor arena whose size a firmware
must set. This package answers those questions with TFLM's own interpreter,
from the `tflite-micro` package (the `micro` extra), imported lazily:

- `micro_ops`: the ops of an artifact and the `MicroMutableOpResolver`
  method a firmware calls for each.
- `check_micro_ops`: every op resolves and prepares in TFLM, else a
  `MicroError` naming the op and the Keras layer it came from.
- `smallest_arena`: the smallest tensor arena that allocates, by bisection.
- `compare_with_litert`: TFLM's outputs against LiteRT's on samples.
- `analyze_micro`: all of the above as one JSON-serialisable dict.

The arena is measured by TFLM's interpreter on this (64-bit) host with the
recording allocator; a 32-bit microcontroller, with smaller pointers in the
interpreter's bookkeeping, should need at most as much.

Its modules, in the order a check runs them: `tflm` (the lazy import of
TFLM, `MicroError`), `ops`, `arena`, `micro_model`, `comparison` and
`analysis`.
"""

from keras_tflq.runtime.micro.analysis import analyze_micro
from keras_tflq.runtime.micro.arena import allocates
from keras_tflq.runtime.micro.arena import smallest_arena
from keras_tflq.runtime.micro.comparison import compare_with_litert
from keras_tflq.runtime.micro.comparison import random_samples
from keras_tflq.runtime.micro.micro_model import MicroModel
from keras_tflq.runtime.micro.ops import MICRO_BUILTIN_OPS
from keras_tflq.runtime.micro.ops import check_micro_ops
from keras_tflq.runtime.micro.ops import micro_ops
from keras_tflq.runtime.micro.ops import resolver_method
from keras_tflq.runtime.micro.ops import resolver_ops
from keras_tflq.runtime.micro.tflm import MICRO_INSTALL_HINT
from keras_tflq.runtime.micro.tflm import MicroError
from keras_tflq.runtime.micro.tflm import tflite_micro_runtime

__all__ = [
    "MICRO_BUILTIN_OPS",
    "MICRO_INSTALL_HINT",
    "MicroError",
    "MicroModel",
    "allocates",
    "analyze_micro",
    "check_micro_ops",
    "compare_with_litert",
    "micro_ops",
    "random_samples",
    "resolver_method",
    "resolver_ops",
    "smallest_arena",
    "tflite_micro_runtime",
]
