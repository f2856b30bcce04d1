"""`analyze_micro`: what a firmware needs to know about an artifact."""

from keras_tflq.runtime.micro.arena import ArenaProbe
from keras_tflq.runtime.micro.arena import bisect_arena
from keras_tflq.runtime.micro.comparison import compare_with_litert
from keras_tflq.runtime.micro.comparison import random_samples
from keras_tflq.runtime.micro.ops import check_ops
from keras_tflq.runtime.micro.ops import micro_ops
from keras_tflq.runtime.micro.tflm import tflite_micro_version


def analyze_micro(content, samples=None, layer_names=None):
    """Everything a firmware needs to know about an artifact, checked in TFLM.

    Args:
        content: The bytes of a TFLite flatbuffer.
        samples: Samples for the LiteRT comparison, each a list of arrays
            of batch 1 in the artifact's input order. Defaults to `None`
            (32 reproducible random samples).
        layer_names: The Keras model's layer names, for error messages.
            Defaults to `None`.

    Returns:
        A JSON-serialisable dict: `ops` (the `MicroMutableOpResolver`
        methods, sorted), `op_counts`, `arena_bytes` (the smallest arena
        that allocates), `flash_bytes` (the model array a firmware keeps in
        flash; kernel code not included), `litert_agreement` (see
        `compare_with_litert`; its `source` says where the samples came
        from) and the `tflite_micro` version.

    Raises:
        MicroError: TFLM cannot run the artifact, or its outputs differ
            from LiteRT's by more than one quantization step.
    """
    with ArenaProbe(content) as probe:
        ops = check_ops(content, layer_names, probe)
        arena = bisect_arena(probe)
    source = "data"
    if samples is None:
        samples, source = random_samples(content), "random"
    agreement = compare_with_litert(content, samples, arena)
    counts = {}
    for op in micro_ops(content):
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return {
        "ops": ops,
        "op_counts": dict(sorted(counts.items())),
        "arena_bytes": arena,
        "flash_bytes": len(content),
        "litert_agreement": {"source": source, **agreement},
        "tflite_micro": tflite_micro_version(),
    }
