"""A bar chart of per-layer error (needs matplotlib: the `plot` extra)."""

import io

import matplotlib

matplotlib.use("Agg")  # No display: render to a file.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

_COLORS = {"int8": "#4C72B0", "int16x8": "#DD8452", "float32": "#55A868"}
_WIDTH_INCHES = 8.0
_DPI = 100


def chart_size(num_layers):
    """The chart's `(width, height)` in pixels for `num_layers` layers."""
    height = 1.6 + 0.32 * max(num_layers, 1)
    return int(_WIDTH_INCHES * _DPI), int(round(height * _DPI))


def plot_layer_errors(errors, title="Per-layer error"):
    """Renders per-layer errors as a horizontal bar chart, as PNG bytes.

    One bar per layer, worst at the top: its length is the RMSE relative to
    the float output's range (log scale), its colour the precision the
    layer runs in, and the SNR in dB is written at its end. The size is
    `chart_size(len(errors))`.

    Args:
        errors: What `keras_tflq.runtime.layer_error.layer_errors` returns.
        title: The chart's title. Defaults to `"Per-layer error"`.

    Returns:
        The PNG's bytes.

    Example:

    >>> png = plot_layer_errors(layer_errors(model, content, x_val[:32]))
    """
    width, height = chart_size(len(errors))
    figure, axes = plt.subplots(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    try:
        rows = list(reversed(errors))  # barh draws bottom-up: worst on top.
        floor = 1e-7
        values = [max(r["relative_rmse"], floor) for r in rows]
        axes.barh(
            range(len(rows)),
            values,
            color=[_COLORS.get(r["precision"], "#8C8C8C") for r in rows],
            height=0.7,
        )
        axes.set_yticks(range(len(rows)))
        axes.set_yticklabels([f"{r['layer']} ({r['precision']})" for r in rows])
        axes.set_xscale("log")
        top = max(values + [floor * 10])
        axes.set_xlim(
            floor if min(values) <= floor else min(values) / 3, top * 6
        )
        for y, (value, row) in enumerate(zip(values, rows, strict=True)):
            axes.text(
                value * 1.1,
                y,
                f"SNR {row['snr_db']:.0f} dB, cos {row['cosine']:.3f}",
                va="center",
                fontsize=8,
            )
        axes.set_xlabel("RMSE relative to the float output's range (log scale)")
        axes.set_title(title, fontsize=10)
        present = [p for p in _COLORS if any(r["precision"] == p for r in rows)]
        axes.legend(
            handles=[Patch(color=_COLORS[p], label=p) for p in present],
            loc="lower right",
            fontsize=8,
            title="precision",
            title_fontsize=8,
        )
        axes.grid(axis="x", alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=_DPI)
        return buffer.getvalue()
    finally:
        plt.close(figure)
