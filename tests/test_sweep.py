"""The sweep summary's pure core: experiments from `dvc exp show --json`, the changed params, the
interval, McNemar's test and the table with the best on validation marked."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import sweep
from pipeline.sweep import Predictions, SweepError


def state(rev: str, name: str | None, params: dict, experiments: list | None = None) -> dict:
    return {
        "rev": rev,
        "name": name,
        "data": {"rev": rev, "params": {"params.yaml": {"data": params}}, "metrics": {}},
        "error": None,
        "experiments": experiments,
    }


def params(dropout: float, batch: int = 128) -> dict:
    return {
        "seed": 1,
        "train": {"batch_size": batch},
        "models": {"mlp": {"small": {"dropout": dropout}, "other": {"dropout": 0.0}}},
    }


SHOWN = [
    state("workspace", None, params(0.0)),
    state(
        "a" * 40,
        "main",
        params(0.0),
        [
            {"revs": [state("b" * 40, "sunny-dog", params(0.1, 64))], "executor": None},
            {"revs": [state("c" * 40, "wet-cat", params(0.2, 64))], "executor": None},
            {
                "revs": [state("d" * 40, "queued-one", params(0.3))],
                "executor": {"state": "queued"},
            },
            {"revs": [state("e" * 40, "broke", params(0.4))], "executor": {"state": "failed"}},
        ],
    ),
]


def test_finished_experiments_of_the_baseline_are_read_and_queued_or_failed_ones_left_out() -> (
    None
):
    baseline, rows = sweep.experiments(SHOWN)
    assert (baseline.name, baseline.rev) == ("baseline", "a" * 40)
    assert [(r.name, r.rev, r.baseline_rev) for r in rows] == [
        ("sunny-dog", "b" * 40, "a" * 40),
        ("wet-cat", "c" * 40, "a" * 40),
    ]
    assert rows[0].params["models.mlp.small.dropout"] == 0.1


def test_no_experiment_is_one_line_naming_the_queue() -> None:
    with pytest.raises(SweepError, match="no finished experiment of aaaaaaa: queue some"):
        sweep.experiments([state("a" * 40, "main", params(0.0))])


def test_changed_params_and_the_model_they_name() -> None:
    baseline, rows = sweep.experiments(SHOWN)
    keys = sweep.changed_params([baseline, *rows])
    assert keys == ["train.batch_size", "models.mlp.small.dropout"]
    assert sweep.model_of(keys, ["small", "other"]) == "small"
    with pytest.raises(SweepError, match="say which model to compare with --model"):
        sweep.model_of(["train.batch_size"], ["small", "other"])
    with pytest.raises(SweepError, match="they change other, small"):
        sweep.model_of(
            ["models.mlp.small.dropout", "models.mlp.other.dropout"], ["small", "other"]
        )


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1, "0.1"), (0.30000000000000004, "0.30000000000000004"), (64, "64"), (True, "true")],
)
def test_params_print_as_yaml_wrote_them(value: object, text: str) -> None:
    assert sweep.param_text(value) == text


def test_mcnemar_exact_on_the_discordant_pairs() -> None:
    both = np.ones(20, bool)
    baseline = np.concatenate([both, np.ones(3, bool), np.zeros(10, bool)])
    other = np.concatenate([both, np.zeros(3, bool), np.ones(10, bool)])
    lost, gained, p = sweep.mcnemar(baseline, other)
    # two-sided exact binomial: 2 * P(X <= 3 | n=13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2**13
    assert (lost, gained) == (3, 10)
    assert p == pytest.approx(2 * 378 / 8192)
    assert sweep.mcnemar(baseline, baseline) == (0, 0, 1.0)
    with pytest.raises(SweepError, match="not the same split"):
        sweep.mcnemar(baseline, other[:5])


def predictions(correct: int, total: int = 100) -> Predictions:
    right = np.arange(total) < correct
    return Predictions(validation=right, test=right[::-1].copy())


def test_the_table_has_intervals_p_and_the_best_on_validation_marked() -> None:
    baseline, rows = sweep.experiments(SHOWN)
    found = {"baseline": predictions(80), "sunny-dog": predictions(90), "wet-cat": predictions(85)}
    seconds = {"baseline": 3.0, "sunny-dog": 2.5, "wet-cat": None}
    table = sweep.summary_table(baseline, rows, found, seconds)
    assert list(table["experiment"]) == ["baseline", "sunny-dog", "wet-cat"]
    assert list(table["models.mlp.small.dropout"]) == ["0.0", "0.1", "0.2"]
    assert list(table["train.batch_size"]) == ["128", "64", "64"]
    assert table["val accuracy (95% CI)"][1] == "90.00% [82.56%, 94.48%]"
    assert list(table["Δ val pp"]) == ["+0.00", "+10.00", "+5.00"]
    assert list(table["lost/gained"]) == ["0/0", "0/10", "0/5"]
    assert table["p (McNemar, val)"][0] == "" and table["p (McNemar, val)"][1] == "0.00195"
    assert list(table["train s"]) == ["3.0", "2.5", ""]
    assert list(table[""]) == ["", "★ best on validation", ""]
    assert not any("test" in column for column in table.columns)
    text = sweep.markdown(table, "small", baseline, 100)
    assert "Sweep of `small` against the baseline aaaaaaa" in text
    assert "`dvc exp apply sunny-dog`" in text

    with_test = sweep.summary_table(baseline, rows, found, seconds, with_test=True)
    assert with_test["[test] accuracy (95% CI)"][1].startswith("90.00% [")
