"""The public API keeps its promise: `keras_tflq` exports what the docs use,
lazily, so importing it does not load TensorFlow."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import keras_tflq

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _documented_names():
    """Every `tflq.x.y` / `keras_tflq.x.y` and `from keras_tflq import x`
    in the README and docs."""
    names = set()
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(
            r"(?<![\w.])(?:keras_)?tflq((?:\.[A-Za-z_]\w*)+)", text
        ):
            names.add(match.group(1)[1:])
        for match in re.finditer(r"from keras_tflq import ([\w, ]+)", text):
            names.update(n.strip() for n in match.group(1).split(","))
    return sorted(names)


DOCUMENTED = _documented_names()


@pytest.mark.parametrize("name", keras_tflq.__all__)
def test_every_name_in_all_resolves(name):
    assert getattr(keras_tflq, name) is not None
    assert name in dir(keras_tflq)


def test_docs_use_names():
    # The scan below finds what it should: the README's first example.
    assert "TFLiteExport" in DOCUMENTED
    assert "quantizers.LastValueQuantizer" in DOCUMENTED


@pytest.mark.parametrize("dotted", DOCUMENTED)
def test_every_name_the_docs_use_is_exported(dotted):
    first, *rest = dotted.split(".")
    assert first in keras_tflq.__all__, (
        f"the docs use keras_tflq.{dotted}, but {first!r} is not exported"
    )
    value = getattr(keras_tflq, first)
    for part in rest:
        value = getattr(value, part)


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        keras_tflq.nothing_here  # noqa: B018


def test_import_does_not_load_tensorflow():
    script = (
        "import sys, keras_tflq; "
        "loaded = sorted({'tensorflow', 'keras', 'ai_edge_litert'} "
        "& set(sys.modules)); "
        "print(loaded)"
    )
    assert _run_python(script) == "[]"


def test_qat_layers_registered_when_keras_is_loaded_first():
    # A saved QAT model reloads after `import keras, keras_tflq`.
    script = (
        "import keras, keras_tflq; "
        "print(keras.saving.get_registered_object("
        "'keras_tflq>QuantizeWrapper') is not None)"
    )
    assert _run_python(script).splitlines()[-1] == "True"


def test_saved_qat_model_reloads_when_keras_is_imported_after(tmp_path):
    # `import keras_tflq` first (no Keras yet), then Keras: load_model
    # still finds the QAT classes without a scope.
    path = tmp_path / "qat.keras"
    save = (
        "import keras, keras_tflq as tflq; "
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]); "
        f"tflq.quantize_model(m).save({str(path)!r})"
    )
    _run_python(save)
    load = (
        "import sys, keras_tflq; "
        "assert 'keras' not in sys.modules; "
        "import keras; "
        f"m = keras.saving.load_model({str(path)!r}); "
        "print(type(m.layers[-1]).__name__)"
    )
    assert _run_python(load).splitlines()[-1] == "QuantizeWrapper"


def _run_python(script):
    """Runs `script` in a fresh interpreter; returns its stripped stdout."""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return result.stdout.strip()
