"""From a Keras model to TFLite bytes: modes, calibration, artifact writing,
report."""
