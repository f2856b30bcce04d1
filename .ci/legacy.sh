#!/usr/bin/env bash
# CI: legacy tf_keras models. Installs the `legacy` extra (tfmot, tf_keras)
# and runs tests/legacy, which the default run skips: the Keras 3
# isolation test (it starts a Keras 3 process of its own), then the
# tf_keras cases in a process with TF_USE_LEGACY_KERAS=1, as tf_keras
# users run. About 3-4 min.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet -e ".[test,legacy]"
export TF_CPP_MIN_LOG_LEVEL=3
python3 -m pytest -q -p no:cacheprovider tests/legacy/test_keras3_isolation.py
TF_USE_LEGACY_KERAS=1 python3 -m pytest -q -p no:cacheprovider \
    tests/legacy/tf_keras_cases.py
