"""A Keras 3 process never loads tfmot nor gets TF_USE_LEGACY_KERAS set."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

# Keras 3 QAT, training and an int8 export with evaluation, as a user runs
# them; then what the process holds.
_KERAS3_RUN = """
import json, os, sys
import numpy as np
import keras
import keras_tflq as tflq

keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(4, 3, activation="relu"),
    keras.layers.Flatten(),
    keras.layers.Dense(10),
])
qat = tflq.quantize_model(model)
qat.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
export = tflq.TFLiteExport("qat_{mode}.tflite", verbose=0)
x = np.random.default_rng(0).random((64, 8, 8, 1), dtype="float32")
y = np.random.default_rng(1).integers(0, 10, 64)
qat.fit(x, y, validation_split=0.25, epochs=1, callbacks=[export], verbose=0)
print(json.dumps({
    "exported": os.path.exists(export.exported_path),
    "val_tflite_accuracy": "accuracy" in export.report["tflite_metrics"],
    "tfmot_loaded": "tensorflow_model_optimization" in sys.modules,
    "tf_keras_loaded": "tf_keras" in sys.modules,
    "TF_USE_LEGACY_KERAS": os.environ.get("TF_USE_LEGACY_KERAS"),
}))
"""


def test_keras3_qat_and_export_never_load_tfmot(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "TF_USE_LEGACY_KERAS"
    }
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]
    )
    run = subprocess.run(
        [sys.executable, "-c", _KERAS3_RUN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    state = json.loads(run.stdout.strip().splitlines()[-1])
    assert state == {
        "exported": True,
        "val_tflite_accuracy": True,
        "tfmot_loaded": False,
        "tf_keras_loaded": False,
        "TF_USE_LEGACY_KERAS": None,
    }
