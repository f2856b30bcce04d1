"""The one version string of keras_tflq."""

__version__ = "0.1.0"
