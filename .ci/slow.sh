#!/usr/bin/env bash
# CI: the tests marked `slow` (full int8 conversions of keras.applications
# MobileNetV2, MobileNetV3Small, EfficientNetB0 and ResNet50), left out of
# the default run to keep it under 15 minutes on 2 cores (about 3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest -q -p no:cacheprovider -m slow
