"""The direction of a monitored metric, read from the metric itself."""

import keras


def _flatten(entries):
    if isinstance(entries, dict):
        for value in entries.values():
            yield from _flatten(value)
    elif isinstance(entries, (list, tuple)):
        for value in entries:
            yield from _flatten(value)
    elif entries is not None:
        yield entries


def _built_metrics(model):
    """The model's metric objects, with the compiled ones unpacked (after
    a first training step has built them)."""
    for metric in getattr(model, "metrics", ()):
        yield metric
        yield from getattr(metric, "metrics", ())


def _compiled_metrics(model):
    """`(name, metric)` for what `compile(metrics=..., weighted_metrics=...)`
    was given, before the first training step builds the metric objects.

    Keras keeps these only in its compile container's `_user_metrics` and
    `_user_weighted_metrics` (read here and nowhere else in this package).
    """
    for container in getattr(model, "metrics", ()):
        for attribute in ("_user_metrics", "_user_weighted_metrics"):
            for entry in _flatten(getattr(container, attribute, None)):
                if isinstance(entry, str):
                    try:
                        yield entry, keras.metrics.get(entry)
                    except ValueError:
                        continue
                else:
                    yield getattr(entry, "name", None), entry


def _matches(logged, name):
    return bool(name) and (logged == name or logged.endswith(f"_{name}"))


def metric_direction(model, monitor):
    """`"max"` or `"min"`: how `monitor` improves, as Keras'
    `MonitorCallback` decides it in mode `"auto"`.

    Losses are minimized; any other metric goes the way its own
    `_direction` (`"up"` or `"down"`) says, whatever its name.

    Args:
        model: The compiled model whose logs hold `monitor`.
        monitor: A logs key, e.g. `"val_mean_io_u"`.

    Returns:
        `"max"` or `"min"`.

    Raises:
        ValueError: The direction of `monitor` cannot be told.

    Example:

    >>> metric_direction(model, "val_accuracy")
    'max'
    """
    logged = monitor.removeprefix("val_")
    if logged == "loss" or logged.endswith("_loss"):
        return "min"
    candidates = [(metric.name, metric) for metric in _built_metrics(model)]
    candidates += list(_compiled_metrics(model))
    for exact in (True, False):
        for name, metric in candidates:
            direction = getattr(metric, "_direction", None)
            found = logged == name if exact else _matches(logged, name)
            if found and direction in ("up", "down"):
                return "max" if direction == "up" else "min"
    raise ValueError(
        "Expected monitor_mode='min' or 'max' for a metric whose direction "
        "cannot be read from the model's compiled losses and metrics (a "
        f"metric without `_direction`, or not compiled). Received: "
        f"monitor={monitor!r} with monitor_mode='auto'"
    )
