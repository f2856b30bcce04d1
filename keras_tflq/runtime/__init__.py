"""Running and inspecting TFLite artifacts with the LiteRT interpreter."""
