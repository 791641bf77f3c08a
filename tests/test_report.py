"""The comparison's paired tests, notes and headline metrics on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import metrics, report
from pipeline.baseline import Baseline

LABELS = np.arange(40) % 10
RIGHT = LABELS.copy()


def wrong_on(indices: list[int]) -> np.ndarray:
    """Predictions right everywhere except at `indices`."""
    predicted = RIGHT.copy()
    predicted[indices] = (predicted[indices] + 1) % 10
    return predicted


def table(*names: str) -> pd.DataFrame:
    """A comparison table of `names` with made-up accuracies (the tests read other columns)."""
    return pd.DataFrame(
        {
            "model": list(names),
            "kind": "cnn",
            "parameters": 10,
            "epochs": 1,
            "train_seconds": 1.0,
            "val_accuracy": 0.9,
            "val_accuracy_low": 0.88,
            "val_accuracy_high": 0.92,
            "test_accuracy": 0.9,
            "test_accuracy_low": 0.85,
            "test_accuracy_high": 0.95,
            "target": 0.5,
            "meets_target": True,
            "reported": 0.9,
            "source": "A",
            "worst_digit": 1,
            "worst_digit_accuracy": 0.8,
            "top_confusion": "1->7 (2)",
            "status": "ok",
        }
    )


def test_paired_tests_against_the_baseline_and_the_champion() -> None:
    now = {"a": wrong_on([0, 1]), "b": wrong_on(list(range(8))), "c": wrong_on([0, 1])}
    before = Baseline("abc", LABELS, {"a": wrong_on([0, 1]), "b": RIGHT}, {"a": 0.95, "b": 1.0})

    result = report.paired_tests(table("a", "b", "c"), now, LABELS, before, "a").set_index("model")

    # a: the same predictions as its baseline
    assert result.loc["a", "delta_vs_baseline"] == 0.0 and result.loc["a", "p_vs_baseline"] == 1.0
    # b: 8 images it used to get right, none gained: p = 2 / 2**8
    assert (result.loc["b", "baseline_only"], result.loc["b", "candidate_only"]) == (8, 0)
    assert result.loc["b", "delta_vs_baseline"] == pytest.approx(-8 / 40)
    assert result.loc["b", "p_vs_baseline"] == pytest.approx(2 / 2**8)
    assert result.loc["b", "verdict_vs_baseline"] == "worse"
    # c: new since the baseline: no Δ at all
    assert pd.isna(result.loc["c", "delta_vs_baseline"])
    # against the champion a: b is worse, the champion itself is Δ 0, p 1
    assert result.loc["b", "verdict_vs_champion"] == "worse"
    assert result.loc["b", "p_vs_champion"] == metrics.mcnemar_p(6, 0)
    assert (result.loc["a", "delta_vs_champion"], result.loc["a", "p_vs_champion"]) == (0.0, 1.0)


def test_missing_baseline_predictions_give_a_delta_without_a_test_and_one_line() -> None:
    before = Baseline("0123456789abcdef", LABELS, {}, {"a": 0.8}, missing=("a",))
    result = report.paired_tests(table("a"), {"a": RIGHT}, LABELS, before, "a")

    assert result.loc[0, "delta_vs_baseline"] == pytest.approx(0.9 - 0.8)
    assert pd.isna(result.loc[0, "p_vs_baseline"])
    notes = report.baseline_notes(before, LABELS, ["a"])
    assert notes[1] == (
        "The baseline 0123456789ab's predictions of a are in neither the DVC cache nor a "
        "remote: Δ without a test."
    )
    shown = report.markdown_report(result, {}, "now", "here", "a", notes)
    assert "| +10.00 pp" in shown and notes[1] in shown


def test_other_test_images_are_not_paired() -> None:
    before = Baseline("abc", LABELS[::-1].copy(), {"a": RIGHT}, {"a": 0.5})
    result = report.paired_tests(table("a"), {"a": RIGHT}, LABELS, before, "a")

    assert pd.isna(result.loc[0, "p_vs_baseline"])
    assert result.loc[0, "delta_vs_baseline"] == pytest.approx(0.4)
    assert "other test images" in report.baseline_notes(before, LABELS, ["a"])[1]


def test_headline_metrics_hold_short_keys_per_row_and_the_champion() -> None:
    before = Baseline("abc", LABELS, {"a": wrong_on([0, 1, 2, 3, 4, 5])}, {"a": 34 / 40})
    result = report.paired_tests(table("a"), {"a": RIGHT}, LABELS, before, "a")

    headline = report.headline_metrics(result, "a")

    assert headline == {
        "champion": "a",
        # Δ in percentage points: 6 of 40 images; p of 0 against 6: 2 / 2**6, to 3 digits
        "a": {"val": 0.9, "test": 0.9, "Δ": 15.0, "p": 0.0312},
    }
    with_ensemble = pd.concat([table("a"), table("ensemble")])
    assert set(report.headline_metrics(with_ensemble, "ensemble")) == {"champion", "a"}


def test_results_table_shows_intervals_and_the_test_against_the_champion() -> None:
    rows = table("a", "b").assign(
        test_accuracy=[0.994, 0.9],
        test_accuracy_low=[0.99243, 0.85],
        test_accuracy_high=[0.99524, 0.95],
    )
    now = {"a": RIGHT, "b": wrong_on(list(range(10)))}
    before = Baseline("abc", LABELS, dict(now), {"a": 0.994, "b": 0.9})
    result = report.paired_tests(rows, now, LABELS, before, "a")

    text = report.results_markdown(result, "now", "here", "a")

    assert "99.40% (99.24–99.52)" in text
    assert "-25.00 pp, p 0.002, worse" in text  # b against the champion a: 10 against 0
    assert "| champion" in text
    assert "Δ vs baseline" not in text  # report.md has those columns
