"""Statistics and timing primitives: medians, alternating runs, paired ratios, CPU accounting."""

from __future__ import annotations

import contextlib
import logging
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger("tools.bench")


class BenchError(PipelineError):
    """A measurement could not be taken: a command failed or a worker process died."""


def median(values: Sequence[float]) -> float:
    """The median of `values`; a ValueError for none."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def alternating_order(sides: Sequence[str], repeats: int) -> list[str]:
    """Each repeat runs every side once; odd repeats in reverse order: a,b,b,a,a,b,..."""
    order: list[str] = []
    for repeat in range(repeats):
        order.extend(sides if repeat % 2 == 0 else reversed(sides))
    return order


def interleave(
    measures: Mapping[str, Callable[[], dict[str, Any]]],
    repeats: int,
    settled: Callable[[str, Mapping[str, list[dict[str, Any]]]], bool] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Run each measure `repeats` times in alternating order; runs[side][i] is repeat i.

    A side for which `settled(side, runs)` holds when its turn comes is not run again, so it
    may end with fewer runs than the others (never fewer than one).
    """
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in measures}
    for side in alternating_order(list(measures), repeats):
        if runs[side] and settled is not None and settled(side, runs):
            continue
        log.info("  %s (run %d of %d)", side, len(runs[side]) + 1, repeats)
        runs[side].append(measures[side]())
    return runs


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of the per-repeat ratios numerator_i / denominator_i."""
    if len(numerators) != len(denominators):
        raise ValueError(f"{len(numerators)} numerators but {len(denominators)} denominators")
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


def verdict(value: float, goal: float) -> str:
    """PASS if `value` is at most `goal`, else FAIL."""
    return "PASS" if value <= goal else "FAIL"


def summary(runs: Sequence[Mapping[str, Any]], key: str) -> dict[str, Any]:
    """The values of `key` over the runs, their median, minimum and maximum."""
    values = [float(run[key]) for run in runs]
    return {"runs": values, "median": median(values), "min": min(values), "max": max(values)}


def subset_size(
    images_per_second: float, target_seconds: float, batch_size: int, low: int, high: int
) -> int:
    """Images for an epoch of about `target_seconds`, clamped to [low, high], whole batches."""
    wanted = min(max(images_per_second * target_seconds, low), high)
    return max(batch_size, int(wanted) // batch_size * batch_size)


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Fill the yielded dict with the block's wall and CPU seconds (all threads of the process)."""
    figures: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield figures
    figures["wall_s"] = time.perf_counter() - wall
    figures["cpu_s"] = time.process_time() - cpu


def busy_cpu_seconds() -> tuple[float, float]:
    """Busy CPU seconds so far of the machine, and of this process and its reaped children."""
    import psutil

    machine = psutil.cpu_times()
    busy = sum(
        getattr(machine, field, 0.0)
        for field in ("user", "nice", "system", "irq", "softirq", "steal")
    )
    own = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return busy, own


def other_cpus(machine_seconds: float, own_seconds: float, wall_seconds: float) -> float:
    """CPUs other processes kept busy on average: (machine - own) CPU seconds per second."""
    return max(0.0, machine_seconds - own_seconds) / wall_seconds if wall_seconds > 0 else 0.0
