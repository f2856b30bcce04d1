"""Legacy `tf_keras` models: detection, and QAT delegated to tfmot.

Nothing here imports `tf_keras` or `tensorflow_model_optimization` when
the package is imported: a `tf_keras` object is recognised by the module
of its class, and tfmot is imported only when such a model reaches a
quantization entry point.
"""
