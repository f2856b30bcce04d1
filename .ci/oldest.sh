#!/usr/bin/env bash
# CI: the oldest declared TensorFlow/Keras pair. Installs the floors of
# pyproject.toml's dependencies (tensorflow, keras, ai-edge-litert, numpy:
# "name>=X" -> "name==X") in a fresh venv and runs the tests that cover
# export in every mode, QAT, and the lookup of fit()'s validation data.
# Measured once: 20 min wall (13.5 min of tests) on a 2-core machine shared
# at load average ~11, 4.2 min of CPU time. OLDEST_VENV= keeps and reuses a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${OLDEST_VENV:-}" ]; then
    venv="$OLDEST_VENV"
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    venv="$scratch/venv"
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pins=$(python3 - <<'PY'
import re
text = open("pyproject.toml").read()
deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
print(" ".join(
    f"{name}=={floor}"
    for name, floor in re.findall(r'"([\w.-]+)>=([\w.]+)"', deps)
))
PY
)
echo "oldest pins: $pins"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# Not the whole `test` extra: its ai-edge-quantizer (max_drop) pins
# ai-edge-litert==2.3.0. The tests below need only pytest (with pytest-xdist,
# which the addopts of pyproject.toml use) and scikit-learn.
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet $pins -e . "pytest>=8" \
    "pytest-xdist>=3.5" "scikit-learn>=1.3"
"$venv/bin/python" - $pins <<'PY'
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, floor = pin.split("==")
    got = version(name)
    assert got.split(".")[:2] == floor.split(".")[:2], (name, got, floor)
    print(f"{name} {got}")
PY
TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/callbacks/test_tflite_export.py \
    tests/callbacks/test_tflite_export_qat.py \
    tests/callbacks/test_fit_validation_data.py \
    tests/conversion/test_model_inputs.py \
    tests/quantization/test_quantize_api.py \
    tests/quantization/test_export_integration.py \
    tests/quantization/test_serialization.py
