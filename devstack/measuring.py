"""Small measuring helpers shared by the benchmarks."""

from __future__ import annotations

import gc

import psutil


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (nan for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and its children, e.g. gunicorn's master and worker."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def quiet_collector() -> None:
    """Before a timed run. The stand-ins for Twilio, the model and Upstash live in the bench's
    process and keep a record of every request; by the later sections that is hundreds of
    thousands of objects, and each full collection walks them all while every stand-in waits.
    Collect once, then freeze what is alive out of the collector's reach (gc.freeze), so a
    run's latencies are the functions', not the pauses of what earlier runs left behind."""
    gc.collect()
    gc.freeze()
