"""The default scheme: TFLite's int8 (and 16x8) quantization spec."""
