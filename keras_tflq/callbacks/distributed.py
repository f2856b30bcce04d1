"""Which process writes, and how the others learn that it failed, under
`tf.distribute`.

Under `MirroredStrategy` one process trains on several devices and writes.
Under `MultiWorkerMirroredStrategy` every worker runs the same `fit()` and
the same callbacks; only the chief writes. A worker that went on training
while the chief's export failed would wait forever at its next collective
op, so after each step that only the chief performs every worker takes part
in one collective op that says whether the chief succeeded, and all of them
stop if it did not.
"""


def strategy_of(model):
    """The `tf.distribute` strategy `model` trains under (the default
    strategy outside any scope)."""
    import tensorflow as tf

    strategy = getattr(model, "distribute_strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes artifacts under `strategy`."""
    return bool(strategy.extended.should_checkpoint)


def worker_count(strategy):
    """The number of worker processes in `strategy`'s cluster (1 without
    a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return max(
        1, sum(len(jobs.get(job, ())) for job in ("chief", "worker"))
    )


def agree(strategy, failed):
    """Returns whether any worker `failed`, as a collective op every worker
    of a multi-worker `strategy` must call at the same point; outside a
    multi-worker cluster, returns `failed`.

    Example:

    >>> if agree(strategy, failed=error is not None) and error is None:
    ...     raise RuntimeError("the chief failed")
    """
    if worker_count(strategy) < 2:
        return bool(failed)
    import tensorflow as tf

    flags = strategy.run(lambda: tf.constant(1.0 if failed else 0.0))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None)
    return float(total) > 0.0


def chief_failed_error(step):
    """The error a non-chief worker raises when the chief's `step` failed."""
    return RuntimeError(
        f"TFLiteExport stopped this worker: the chief's {step} failed (its "
        "error is in the chief's output). The other workers stop too, "
        "instead of waiting for the chief at the next training step."
    )
