"""The `keras-tflq` command line: export, inspect, evaluate, compare artifacts.

`--help` answers without importing TensorFlow: each command imports what it
needs when it runs. Unless the caller set `TF_CPP_MIN_LOG_LEVEL`, the CLI
sets it to `2` and keeps TensorFlow's C++ start-up lines off stderr (TF 2.21
writes some of them whatever the level).

Example:

```
keras-tflq export model.keras --mode int8 --calibration val.npz
keras-tflq inspect model_int8.tflite
keras-tflq evaluate model_int8.tflite --data val.npz
keras-tflq compare model.keras model_int8.tflite --data val.npz
keras-tflq micro model_int8.tflite --emit-c firmware/
```

Its modules: `parser` (the arguments, no TensorFlow), `commands` (export,
inspect, evaluate, micro), `compare` and `data_files` (the `.keras`,
`.npz` and `.npy` files the commands read).
"""

import os
import sys

from keras_tflq.cli.parser import build_parser
from keras_tflq.conversion.errors import ConversionError


def main(argv=None):
    """Runs the `keras-tflq` command line.

    Args:
        argv: The arguments without the program name, or `None` for
            `sys.argv[1:]`. Defaults to `None`.

    Returns:
        The exit status: `0` on success, `1` when the input is rejected
        (the reason is printed to stderr).

    Example:

    ```python
    from keras_tflq.cli import main

    main(["inspect", "model_int8.tflite", "--json"])
    ```
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 1
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        _import_tensorflow_quietly()
    try:
        args.run(args)
    except (ValueError, ConversionError, ImportError) as e:
        print(f"keras-tflq {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


def _import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow's C++ start-up lines (oneDNN, CUDA drivers, absl's
    "InitializeLog" warning) go straight to fd 2 during the import, before
    `TF_CPP_MIN_LOG_LEVEL` is read; Python's own errors are unaffected.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
