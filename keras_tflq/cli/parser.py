"""The `keras-tflq` arguments: no TensorFlow is imported to parse them."""

import argparse

from keras_tflq.cli.commands import run_evaluate
from keras_tflq.cli.commands import run_export
from keras_tflq.cli.commands import run_inspect
from keras_tflq.cli.commands import run_micro
from keras_tflq.cli.compare import run_compare


def build_parser():
    """The `keras-tflq` parser, one sub-command per command."""
    parser = argparse.ArgumentParser(
        prog="keras-tflq",
        description=(
            "Export, inspect, evaluate and compare TFLite (LiteRT) artifacts."
        ),
    )
    commands = parser.add_subparsers(dest="command")

    export = commands.add_parser(
        "export",
        help="a saved .keras model to a .tflite artifact and its JSON report",
    )
    export.add_argument("model", help="the .keras model")
    export.add_argument(
        "--mode",
        default="int8",
        help="float32, float16, dynamic, int8 or int16x8 (default int8)",
    )
    export.add_argument(
        "-o",
        "--output",
        help="the .tflite path (default <model>_<mode>.tflite)",
    )
    export.add_argument(
        "--calibration",
        help=(
            "an .npz with `x` (or `x_<input name>`), or an .npy of the "
            "inputs of a single-input model, to calibrate on"
        ),
    )
    export.add_argument("--calibration-samples", type=int, default=200)
    export.add_argument(
        "--validation", help="an .npz with `x` and `y` to score the artifact on"
    )
    export.add_argument("--input-type", help="int8, uint8, int16 or float32")
    export.add_argument("--output-type", help="int8, uint8, int16 or float32")
    export.add_argument(
        "--allow-float-ops",
        action="store_true",
        help="let ops with no integer kernel run in float",
    )
    export.add_argument(
        "--json", action="store_true", help="print the report as JSON"
    )
    export.set_defaults(run=run_export)

    inspect = commands.add_parser(
        "inspect", help="ops, tensor types, size and float ops left"
    )
    inspect.add_argument("tflite", help="the .tflite file")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(run=run_inspect)

    evaluate = commands.add_parser(
        "evaluate", help="argmax accuracy and MSE of an artifact on data"
    )
    evaluate.add_argument("tflite", help="the .tflite file")
    _add_data_arguments(evaluate)
    evaluate.set_defaults(run=run_evaluate)

    compare = commands.add_parser(
        "compare",
        help="a Keras model against its artifact, layer by layer; writes "
        "<artifact>_layers.json (and .png with the plot extra) beside it",
    )
    compare.add_argument("model", help="the .keras model")
    compare.add_argument("tflite", help="the .tflite file")
    _add_data_arguments(compare)
    compare.add_argument(
        "--layer-samples",
        type=int,
        default=32,
        help="samples for the layer-by-layer comparison (default 32)",
    )
    compare.set_defaults(run=run_compare)

    micro = commands.add_parser(
        "micro",
        help="TFLite Micro: op check, arena size, TFLM vs LiteRT, C sources",
    )
    micro.add_argument("tflite", help="the .tflite file")
    micro.add_argument("--data", help="an .npz with `x` (or `x_<input>`)")
    micro.add_argument("--emit-c", metavar="DIR", help="write <name>.h/.cc")
    micro.add_argument("--json", action="store_true", help="print JSON")
    micro.set_defaults(run=run_micro)
    return parser


def _add_data_arguments(parser):
    parser.add_argument(
        "--data",
        required=True,
        help=(
            "an .npz file with `x` (or `x_<input name>` per input) and `y` "
            "(compare also takes an .npy of a single input)"
        ),
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON")
