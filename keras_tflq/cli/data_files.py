"""The files the command line reads: `.keras` models, `.npz`/`.npy` data."""

import os
import zipfile

import numpy as np


def _one_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _read(path):
    """The arrays of `path` by key (`x` for an `.npy` file)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}, ".npy"
        with loaded as data:
            return {key: data[key] for key in data.files}, ".npz"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            "Expected a NumPy .npz or .npy data file (numeric arrays, "
            f"np.savez / np.save). Received: {path} ({_one_line(error)})"
        ) from None


def load_data(path, input_names, need_y=True):
    """Returns `([x per input], y)` from an `.npz` or `.npy` file.

    An `.npz` holds `x` (one input) or `x_<input name>` per input, and `y`;
    an `.npy` holds the inputs of a single-input model (no `y`). Every file
    that cannot be read gives a one-line `ValueError`.

    Args:
        path: The data file.
        input_names: The model's input names.
        need_y: Whether labels are required (evaluation).
            Defaults to `True`.

    Returns:
        `([x per input], y)`, `y` being `None` when absent.

    Example:

    >>> x, y = load_data("val.npz", ["image"])
    """
    arrays, kind = _read(existing_file(path, "data"))
    if kind == ".npy":
        if len(input_names) != 1:
            raise ValueError(
                "Expected an .npz with "
                f"{', '.join(f'`x_{name}`' for name in input_names)} for a "
                f"model with {len(input_names)} inputs; an .npy file holds "
                f"one array. Received: {path}"
            )
        if need_y:
            raise ValueError(
                "Expected an .npz with `x` and `y` to evaluate on; an .npy "
                f"file holds inputs only. Received: {path}"
            )
    keys = set(arrays)
    per_input = [f"x_{name}" for name in input_names]
    if "x" in keys and len(input_names) == 1:
        x = [arrays["x"]]
    elif all(key in keys for key in per_input):
        x = [arrays[key] for key in per_input]
    else:
        wanted = "`x` or " if len(input_names) == 1 else ""
        raise ValueError(
            f"Expected {wanted}{', '.join(f'`{k}`' for k in per_input)} "
            f"in {path}. Received: keys {sorted(keys)}"
        )
    if need_y and "y" not in keys:
        raise ValueError(
            f"Expected `y` in {path}. Received: keys {sorted(keys)}"
        )
    for key, array in arrays.items():
        if not np.issubdtype(array.dtype, np.number) and not (
            np.issubdtype(array.dtype, np.bool_)
        ):
            raise ValueError(
                f"Expected numeric arrays in {path}. Received: `{key}` of "
                f"dtype {array.dtype}"
            )
    return x, arrays.get("y")


def load_keras_model(path):
    """Loads a `.keras` model; a QAT model's layers are registered first.

    The model keeps its compile settings (the artifact is scored with its
    loss and metrics); Keras' warning that it skipped the saved optimizer's
    variables is silenced, since the commands never train.
    """
    import warnings

    import keras

    import keras_tflq.quantization  # noqa: F401  (registers the QAT layers)

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Skipping variable loading for optimizer"
        )
        return keras.saving.load_model(existing_file(path, "model"))


def existing_file(path, argument):
    if not os.path.isfile(path):
        raise ValueError(
            f"Expected an existing file for `{argument}`. "
            f"Received: {argument}={path}"
        )
    return path


def as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
