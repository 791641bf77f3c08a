"""Tests of tools.bench.measure: medians, alternating runs, paired ratios, timing, CPU use."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tools.bench.formatting import alternation_text
from tools.bench.measure import (
    alternating_order,
    busy_cpu_seconds,
    interleave,
    median,
    other_cpus,
    paired_ratio,
    subset_size,
    summary,
    timed,
    verdict,
)


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_nothing_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_alternating_order_reverses_every_other_repeat() -> None:
    assert alternating_order(["a", "b"], 4) == list("abbaabba")
    assert alternating_order(["a", "b", "c"], 3) == list("abccbaabc")
    assert alternation_text(["a", "b"]) == "a,b,b,a,..."


def recorder(calls: list[str]) -> Callable[[str], Callable[[], dict[str, float]]]:
    """Measures that append their side to `calls` and return their 1-based call index."""

    def side(name: str) -> Callable[[], dict[str, float]]:
        def measure() -> dict[str, float]:
            calls.append(name)
            return {"index": float(len(calls))}

        return measure

    return side


def test_interleave_runs_sides_in_alternating_order_and_keeps_repeats_in_order() -> None:
    calls: list[str] = []
    side = recorder(calls)
    runs = interleave({"a": side("a"), "b": side("b")}, 3)
    assert calls == list("abbaab")
    assert [run["index"] for run in runs["a"]] == [1.0, 4.0, 5.0]
    assert [run["index"] for run in runs["b"]] == [2.0, 3.0, 6.0]


def test_interleave_stops_repeating_a_side_once_it_is_settled() -> None:
    calls: list[str] = []
    side = recorder(calls)

    def settled(name: str, runs: dict) -> bool:
        return name == "b" and runs[name][0]["index"] == 2.0  # b's first run settles it

    runs = interleave({"a": side("a"), "b": side("b"), "c": side("c")}, 3, settled=settled)
    assert calls == list("abccaac")
    assert len(runs["b"]) == 1 and len(runs["a"]) == len(runs["c"]) == 3


def test_paired_ratio_is_the_median_of_per_repeat_ratios_not_a_ratio_of_medians() -> None:
    # Per-repeat ratios 2, 1, 3 -> 2; the ratio of the medians would be 4 / 3.
    assert paired_ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0]) == 2.0


def test_paired_ratio_needs_one_denominator_per_numerator() -> None:
    with pytest.raises(ValueError, match="2 numerators but 1 denominators"):
        paired_ratio([1.0, 2.0], [1.0])


def test_verdict_passes_at_the_goal_and_fails_above_it() -> None:
    assert verdict(1.03, 1.03) == "PASS"
    assert verdict(0.5, 1.03) == "PASS"
    assert verdict(1.0301, 1.03) == "FAIL"


def test_summary_holds_runs_median_and_range() -> None:
    runs = [{"wall_s": 3.0}, {"wall_s": 1.0}, {"wall_s": 2.0}]
    assert summary(runs, "wall_s") == {
        "runs": [3.0, 1.0, 2.0],
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
    }


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (1000.0, 2944),  # 3,000 images wanted -> 23 whole batches of 128
        (10.0, 2560),  # too slow: the lower bound
        (1e6, 10240),  # fast: the upper bound
    ],
)
def test_subset_size_is_whole_batches_within_bounds(rate: float, expected: int) -> None:
    assert subset_size(rate, 3.0, 128, 2560, 10240) == expected


def test_subset_size_is_at_least_one_batch() -> None:
    assert subset_size(1.0, 1.0, 512, 100, 200) == 512


def test_timed_measures_wall_and_cpu_seconds() -> None:
    with timed() as figures:
        sum(range(200_000))
    assert figures["wall_s"] > 0
    assert figures["cpu_s"] >= 0


def test_other_cpus_is_the_machine_s_busy_time_not_ours_per_second() -> None:
    assert other_cpus(30.0, 10.0, 10.0) == 2.0
    assert other_cpus(10.0, 12.0, 10.0) == 0.0  # clock granularity: never negative
    assert other_cpus(1.0, 0.0, 0.0) == 0.0


def test_busy_cpu_seconds_grow_with_our_own_work() -> None:
    machine, own = busy_cpu_seconds()
    sum(range(2_000_000))
    machine_after, own_after = busy_cpu_seconds()
    assert own_after > own
    assert machine_after >= machine
