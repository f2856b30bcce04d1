"""Quantization-aware training for Keras 3: annotate, configure, apply."""
