"""The one version string of keras_tflq."""

__version__ = "0.2.0.dev0"
