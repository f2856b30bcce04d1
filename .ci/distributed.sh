#!/usr/bin/env bash
# CI: TFLiteExport and QAT under MultiWorkerMirroredStrategy, two worker
# processes on 127.0.0.1, each bounded in time and always terminated (see
# tests/callbacks/distributed_runs.py). Kept out of the default suite for
# its run time.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pytest -q -p no:cacheprovider tests/callbacks/check_multi_worker.py
