"""Quickstart: train a small CNN on real digits and get a checked int8 TFLite
model from fit().

Uses scikit-learn's `load_digits` (1,797 real 8x8 handwritten digits that ship
with scikit-learn; nothing is downloaded). Runs in well under two minutes on
two CPU cores:

    python examples/quickstart.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_tflq  # noqa: E402


def build_model():
    inputs = keras.Input((8, 8, 1), name="digit")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def main():
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    export = keras_tflq.TFLiteExport("digits_cnn_int8.tflite", mode="int8")
    model.fit(
        x_train,
        y_train,
        validation_split=0.2,  # the int8 model is calibrated on this split
        epochs=12,
        batch_size=32,
        callbacks=[export],
        verbose=2,
    )

    artifact = keras_tflq.LiteRTModel(model_path=export.exported_path)
    float_accuracy = np.mean(
        np.argmax(model.predict(x_test, verbose=0), -1) == y_test
    )
    int8_accuracy = np.mean(np.argmax(artifact.predict(x_test), -1) == y_test)
    report = export.report
    print()
    print(
        f"artifact:              {export.exported_path} "
        f"({report['bytes'] / 1024:.1f} KiB)"
    )
    print(f"tensor types:          {sorted(report['tensor_dtypes'])}")
    print(f"float test accuracy:   {float_accuracy:.4f}")
    print(f"int8 test accuracy:    {int8_accuracy:.4f}")
    print(
        "report:                "
        f"{os.path.splitext(export.exported_path)[0]}.json"
    )


if __name__ == "__main__":
    main()
