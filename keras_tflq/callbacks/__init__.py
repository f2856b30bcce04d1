"""Keras callbacks: export to TensorFlow Lite during fit(), schedule
quantization."""
