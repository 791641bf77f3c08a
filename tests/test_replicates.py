"""Seed replicates (params.yaml `replicates`): the key's validation, names and seeds, the report's
mean ± std with the target checked on the mean, and a tiny real `dvc repro` / `dvc exp run`."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import paths, report
from pipeline.config import Params, load_params, parse_params
from pipeline.errors import ConfigError
from pipeline.stages import report as report_stage
from pipeline.training import replicate_seed
from tests.support import (
    copy_repository,
    edit_params,
    run,
    stages_run,
    store_uri,
    write_small_params,
)

RAW = yaml.safe_load(paths.PARAMS.read_text())


def with_replicates(value: Any, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of the real params (or `raw`) with `replicates` set to `value`."""
    changed = copy.deepcopy(raw if raw is not None else RAW)
    changed["replicates"] = value
    return changed


# ---------------------------------------------------------------------------- the key


def test_the_real_file_trains_each_model_once() -> None:
    params = load_params()
    assert params.replicates == ()
    assert params.replicate_names("mlp_e_128") == ["mlp_e_128"]


def test_replicates_give_names_and_resolve_back() -> None:
    params = parse_params(with_replicates([1, 2]))
    assert params.replicates == (1, 2)
    assert params.replicate_names("cnn_d_32") == ["cnn_d_32", "cnn_d_32_r1", "cnn_d_32_r2"]
    assert params.replicate("cnn_d_32") == (params.model("cnn_d_32"), 0)
    assert params.replicate("cnn_d_32_r2") == (params.model("cnn_d_32"), 2)
    for unknown in ("cnn_d_32_r3", "nope_r1"):
        with pytest.raises(ConfigError) as info:
            params.replicate(unknown)
        assert str(info.value).startswith(f"models: no model or replicate named {unknown!r}")
        assert "replicates: [1, 2], named <model>_r<k>" in str(info.value)
    with pytest.raises(ConfigError, match="no model named 'nope'"):
        params.replicate("nope")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "replicates must be a list of the replicates beyond the first, not a count "
            "([1, 2] for N = 3 trainings per model), got 3"),
        (1, "replicates must be a list of the replicates beyond the first, not a count "
            "([] for N = 1 trainings per model), got 1"),
        ([2], "replicates must be [] or [1, 2, ..., N-1] in order, got [2]"),
        ([0, 1], "replicates must be [] or [1, 2, ..., N-1] in order, got [0, 1]"),
        ([1, 1], "replicates must be [] or [1, 2, ..., N-1] in order, got [1, 1]"),
        ([2, 1], "replicates must be [] or [1, 2, ..., N-1] in order, got [2, 1]"),
        (list(range(1, 11)), "replicates lists 10 replicates beyond the first; at most 9 "
                             "(N = 10 trainings per model)"),
        ([1, "2"], "replicates.1 must be an integer, got '2'"),
        ([True], "replicates.0 must be an integer, got True"),
        ("1,2", "replicates must be a list, got '1,2'"),
        (None, "replicates must be a list, got None"),
    ],
)  # fmt: skip
def test_bad_replicates_are_one_line_naming_the_key(value: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_params(with_replicates(value))
    assert str(info.value) == expected


def test_missing_replicates_is_named() -> None:
    raw = copy.deepcopy(RAW)
    del raw["replicates"]
    with pytest.raises(ConfigError, match="^replicates is missing$"):
        parse_params(raw)


def test_nine_replicates_beyond_the_first_are_the_most() -> None:
    assert len(parse_params(with_replicates(list(range(1, 10)))).replicates) == 9


def test_a_replicate_named_like_another_model_is_refused() -> None:
    raw = copy.deepcopy(RAW)
    raw["models"]["mlp"]["mlp_e_128_r1"] = raw["models"]["mlp"]["mlp_d_784"]
    assert parse_params(raw).replicates == ()  # no clash while there are no replicates
    with pytest.raises(ConfigError) as info:
        parse_params(with_replicates([1], raw))
    assert str(info.value) == (
        "replicates: replicate 1 of model mlp_e_128 would be named mlp_e_128_r1, the name of "
        "another model (rename that model)"
    )


def test_replicate_zero_keeps_the_seed_and_the_others_differ() -> None:
    assert replicate_seed(42, 0) == 42
    seeds = [replicate_seed(42, k) for k in range(10)]
    assert len(set(seeds)) == 10
    assert all(0 <= s <= 2**32 - 1 for s in seeds)
    assert seeds == [replicate_seed(42, k) for k in range(10)]  # a function of (seed, k)
    assert replicate_seed(42, 1) != replicate_seed(43, 0)  # not seed + k
    assert replicate_seed(42, 1) != replicate_seed(43, 1)


# ---------------------------------------------------------------------------- aggregation


def trainings(rows: list[tuple[str, int, float, float]]) -> pd.DataFrame:
    """A hand-made replicate table: (model, replicate, validation, test accuracy)."""
    return pd.DataFrame(
        [
            {
                "model": model,
                "replicate": k,
                "name": model if k == 0 else f"{model}_r{k}",
                "parameters": 100,
                "train_seconds": 10.0 + k,
                "val_accuracy": val,
                "test_accuracy": test,
            }
            for model, k, val, test in rows
        ]
    )


def model_table(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """The comparison table's columns for (model, replicate 0's test accuracy, target)."""
    return pd.DataFrame(
        [
            {"model": name, "kind": "cnn", "source": "A", "parameters": 100, "epochs": 1,
             "train_seconds": 10.0, "val_accuracy": test, "test_accuracy": test,
             "target": target, "meets_target": test >= target, "reported": 0.99,
             "worst_digit": 1, "worst_digit_accuracy": 0.9, "top_confusion": "1->7 (2)",
             "status": "ok"}
            for name, test, target in rows
        ]
    )  # fmt: skip


HAND_MADE = trainings(
    [
        ("lucky", 0, 0.980, 0.990),  # replicate 0 meets the target, the mean does not
        ("lucky", 1, 0.960, 0.950),
        ("lucky", 2, 0.970, 0.970),
        ("unlucky", 0, 0.950, 0.970),  # replicate 0 misses it, the mean meets it
        ("unlucky", 1, 0.990, 0.990),
    ]
)


def test_spread_is_the_mean_and_sample_standard_deviation_per_model() -> None:
    spread = report.replicate_spread(HAND_MADE).set_index("model")
    assert list(spread.index) == ["lucky", "unlucky"]
    assert spread.loc["lucky", "replicates"] == 3
    assert spread.loc["lucky", "test_mean"] == pytest.approx(0.97)
    assert spread.loc["lucky", "test_std"] == pytest.approx(0.02)  # ddof=1: sqrt(0.0008 / 2)
    assert spread.loc["lucky", "val_mean"] == pytest.approx(0.97)
    assert spread.loc["lucky", "val_std"] == pytest.approx(0.01)
    assert spread.loc["unlucky", "test_mean"] == pytest.approx(0.98)
    assert spread.loc["unlucky", "test_std"] == pytest.approx(0.02 / math.sqrt(2))


def test_a_replicate_without_results_is_left_out_of_the_spread() -> None:
    missing = pd.concat(
        [HAND_MADE, trainings([("unlucky", 2, float("nan"), float("nan"))])], ignore_index=True
    )
    spread = report.replicate_spread(missing).set_index("model")
    assert spread.loc["unlucky", "replicates"] == 2
    assert spread.loc["unlucky", "test_mean"] == pytest.approx(0.98)


def test_the_target_is_checked_on_the_mean_not_on_replicate_zero() -> None:
    table = model_table([("lucky", 0.990, 0.975), ("unlucky", 0.970, 0.975)])
    assert list(table["meets_target"]) == [True, False]  # replicate 0 alone
    checked = report.with_replicates(table, report.replicate_spread(HAND_MADE))
    assert list(checked["meets_target"]) == [False, True]  # 0.970 and 0.980 against 0.975
    summary = report.replicate_summary(checked)
    assert summary["lucky"] == {
        "replicates": 3,
        "val_accuracy_mean": pytest.approx(0.97),
        "val_accuracy_std": pytest.approx(0.01),
        "test_accuracy_mean": pytest.approx(0.97),
        "test_accuracy_std": pytest.approx(0.02),
        "meets_target_on_mean": False,
    }
    assert summary["unlucky"]["meets_target_on_mean"] is True


def test_the_report_shows_mean_and_std_beside_each_model_and_says_what_they_are() -> None:
    table = model_table([("lucky", 0.990, 0.975), ("unlucky", 0.970, 0.975)])
    checked = report.with_replicates(table, report.replicate_spread(HAND_MADE))
    text = report.markdown_report(checked, {}, "now", "here", "lucky", replicates=HAND_MADE)
    comparison, replicates = text.split("## Seed replicates")
    rows = {line.split("|")[1].strip(): line for line in comparison.splitlines() if "| " in line}
    header = [cell.strip() for cell in rows["model"].split("|")]
    assert header.index(report.REPLICATE_COLUMN) == header.index("test acc (95% CI)") + 1
    assert "| 97.00% ± 2.00 pp (n=3) |" in rows["lucky"]
    assert "| 98.00% ± 1.41 pp (n=2) |" in rows["unlucky"]
    assert "97.50% ✗" in rows["lucky"] and "97.50% ✓" in rows["unlucky"]
    assert "each model trained 3 times" in text and "each target is checked on that mean" in text
    assert "| unlucky_r1 " in replicates and "| 99.00% " in replicates
    results = report.results_markdown(checked, "now", "here", "lucky")
    assert report.REPLICATE_COLUMN in results and "checked on that mean" in results
    page = report.html_report(checked, {}, "now", "here", "lucky")
    assert report.REPLICATE_COLUMN in page and "98.00% ± 1.41 pp (n=2)" in page


def test_without_replicates_the_report_is_as_before() -> None:
    table = model_table([("lucky", 0.990, 0.975)])
    text = report.markdown_report(table, {}, "now", "here", "lucky")
    assert report.REPLICATE_COLUMN not in text and "Seed replicates" not in text
    assert "Seed replicates" not in report.results_markdown(table, "now", "here", "lucky")


def test_replicates_are_ensemble_candidates_with_their_own_rows() -> None:
    """The greedy ensemble takes any set of probability arrays: replicate k of a model is one
    more candidate, and the ensemble's row adds up its members' parameters and time."""
    labels = np.arange(40) % 10
    right = np.eye(10)[labels]
    wrong_half = right.copy()
    wrong_half[:20] = np.eye(10)[(labels[:20] + 1) % 10]
    stored = {
        name: {"validation": probs, "test": probs, "y_validation": labels, "y_test": labels}
        for name, probs in (("lucky", wrong_half), ("lucky_r1", right))
    }
    ensemble = report_stage._ensemble(load_params(), stored)
    assert ensemble["weights"] == {"lucky_r1": load_params().ensemble.rounds}
    row = report.ensemble_row(
        ensemble["weights"], report.member_rows(HAND_MADE), ensemble["scores"], ensemble["scores"]
    )
    assert row["source"] == f"lucky_r1×{load_params().ensemble.rounds}"
    assert row["parameters"] == 100 and row["train_seconds"] == 11.0


def test_the_report_stage_reads_every_replicate(tmp_path: Path, monkeypatch) -> None:
    """_with_replicates: each model's trainings from reports/models/<name>[_r<k>]/."""
    params: Params = parse_params(with_replicates([1]))
    for name, test in (("mlp_e_128", 0.97), ("mlp_e_128_r1", 0.99)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train.json").write_text(json.dumps({"parameters": 5, "train_seconds": 2.0}))
        (folder / "metrics.json").write_text(
            json.dumps({"val_accuracy": test, "test_accuracy": test})
        )
    monkeypatch.setattr(paths, "MODEL_REPORTS_DIR", tmp_path)
    table = model_table([("mlp_e_128", 0.97, 0.975)])
    checked, replicates, names = report_stage._with_replicates(params, table)
    assert "mlp_e_128_r1" in names and "cnn_d_32_r1" in names and len(names) == 18
    row = checked.set_index("model").loc["mlp_e_128"]
    assert row["replicates"] == 2 and row["test_mean"] == pytest.approx(0.98)
    assert bool(row["meets_target"]) is True
    assert replicates["test_accuracy"].notna().sum() == 2
    unchanged, none, models = report_stage._with_replicates(load_params(), table)
    assert unchanged is table and none is None and models == list(load_params().models)


# ---------------------------------------------------------------------------- a tiny real run

MODELS = ("tiny_mlp", "tiny_cnn")
TODAYS_STAGES = {
    "download",
    "preprocess",
    "train_mlp@tiny_mlp",
    "train_cnn@tiny_cnn",
    "evaluate_mlp@tiny_mlp",
    "evaluate_cnn@tiny_cnn",
    "report",
}


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> dict[str, Any]:
    """A tiny repository run with `replicates: []`, then `dvc exp run -S 'replicates=[1]'`."""
    folder = tmp_path_factory.mktemp("replicates")
    repo = copy_repository(folder / "repo")
    write_small_params(repo)
    run(["git", "commit", "-qam", "small params"], repo)
    first = run(["dvc", "repro"], repo)
    (folder / "before").mkdir()
    for name in MODELS:  # replicate 0 as a run without replicates trained it
        shutil.copy2(repo / "models" / f"{name}.keras", folder / "before")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    second = run(["dvc", "exp", "run", "-S", "replicates=[1]"], repo)
    return {
        "repo": repo,
        "before": folder / "before",
        "first": set(stages_run(first.stdout)),
        "second": set(stages_run(second.stdout)),
        "lock": lock,
    }


def metrics_of(repo: Path, name: str) -> dict[str, Any]:
    return json.loads((repo / "reports" / "models" / name / "metrics.json").read_text())


def lock_outs(lock: dict[str, Any], stage: str) -> dict[str, str]:
    return {out["path"]: out.get("md5") for out in lock["stages"][stage]["outs"]}


@pytest.mark.e2e
def test_without_replicates_todays_stages_run(replicated: dict[str, Any]) -> None:
    assert replicated["first"] == TODAYS_STAGES


@pytest.mark.e2e
def test_adding_a_replicate_trains_and_evaluates_only_it(replicated: dict[str, Any]) -> None:
    repo = replicated["repo"]
    assert yaml.safe_load((repo / "params.yaml").read_text())["replicates"] == [1]
    assert replicated["second"] == {
        "train_mlp_replicate@tiny_mlp-1",
        "train_cnn_replicate@tiny_cnn-1",
        "evaluate_mlp_replicate@tiny_mlp-1",
        "evaluate_cnn_replicate@tiny_cnn-1",
        "report",
    }
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for stage in ("train_mlp@tiny_mlp", "train_cnn@tiny_cnn"):
        assert lock_outs(lock, stage) == lock_outs(replicated["lock"], stage)
    for name, kind in (("tiny_mlp", "mlp"), ("tiny_cnn", "cnn")):  # each its own model's params
        stage = lock["stages"][f"train_{kind}_replicate@{name}-1"]
        # no name in the shell: the stage reads `<name>-1` from DVC_STAGE as <name>_r1
        assert stage["cmd"].split("#")[0].strip() == "python -m pipeline.stages.train"
        depends = {f"models.{kind}.{name}", "runner", "seed", "train", "data.num_classes"}
        assert set(stage["params"]["params.yaml"]) == depends
    listed = run(["dvc", "stage", "list", "--name-only"], repo).stdout.split()
    for name, kind in (("tiny_mlp", "mlp"), ("tiny_cnn", "cnn")):
        assert f"train_{kind}@{name}" in listed and f"train_{kind}_replicate@{name}-1" in listed
        assert (repo / "models" / f"{name}_r1.keras").is_file()
        # another seed, another model: the two replicates' probabilities differ
        with (
            np.load(repo / "reports" / "models" / name / "probabilities.npz") as zero,
            np.load(repo / "reports" / "models" / f"{name}_r1" / "probabilities.npz") as one,
        ):
            assert not np.array_equal(zero["validation"], one["validation"])
    assert "up to date" in run(["dvc", "repro"], repo).stdout


@pytest.mark.e2e
@pytest.mark.parametrize("name", MODELS)
def test_each_replicate_is_its_own_run_grouped_by_the_model_tag(
    replicated: dict[str, Any], name: str
) -> None:
    client = MlflowClient(tracking_uri=store_uri(replicated["repo"]))
    experiment = client.get_experiment_by_name("mnist-pipeline")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`pipeline.model` = '{name}'"
    )
    by_replicate = {r.data.tags["pipeline.replicate"]: r for r in runs}
    assert len(runs) == 2 and set(by_replicate) == {"0", "1"}
    assert by_replicate["0"].info.run_name == name
    assert by_replicate["1"].info.run_name == f"{name}_r1"
    for replicate, found in by_replicate.items():
        assert found.info.status == "FINISHED"
        assert found.data.params["replicate"] == replicate
        assert found.data.params["seed"] == "42"
        assert found.data.tags["pipeline.evaluated"] == "true"
        trained = metrics_of(replicated["repo"], name if replicate == "0" else f"{name}_r1")
        assert found.data.metrics["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    assert by_replicate["0"].data.params["replicate_seed"] == "42"
    assert by_replicate["1"].data.params["replicate_seed"] == str(replicate_seed(42, 1))


@pytest.mark.e2e
def test_report_shows_mean_and_std_of_the_two_replicates(replicated: dict[str, Any]) -> None:
    repo = replicated["repo"]
    text = (repo / "reports" / "report.md").read_text()
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert report.REPLICATE_COLUMN in text and "each model trained 2 times" in text
    assert "## Seed replicates" in text
    for name in MODELS:
        tests = [metrics_of(repo, n)["test_accuracy"] for n in (name, f"{name}_r1")]
        mean, std = float(np.mean(tests)), float(np.std(tests, ddof=1))
        assert f"| {100 * mean:.2f}% ± {100 * std:.2f} pp (n=2) |" in text
        spread = summary["replicates"][name]
        assert spread["replicates"] == 2
        assert spread["test_accuracy_mean"] == pytest.approx(mean)
        assert spread["test_accuracy_std"] == pytest.approx(std)
        assert spread["meets_target_on_mean"] == (mean >= 0.5)


@pytest.mark.e2e
def test_target_is_checked_on_the_mean_and_replicate_zero_keeps_its_weights(
    replicated: dict[str, Any],
) -> None:
    """A target between replicate 0's test accuracy and the mean: the verdict is the mean's.
    Changing the target retrains both replicates of the model, under `replicates: [1]`: its
    replicate 0 has, weight for weight, the model trained without replicates."""
    from pipeline.models import load_model

    repo = replicated["repo"]
    name = next(
        n
        for n in MODELS
        if metrics_of(repo, n)["test_accuracy"] != metrics_of(repo, f"{n}_r1")["test_accuracy"]
    )
    zero = metrics_of(repo, name)["test_accuracy"]
    mean = (zero + metrics_of(repo, f"{name}_r1")["test_accuracy"]) / 2
    target = round((zero + mean) / 2, 8)
    kind = "mlp" if name == "tiny_mlp" else "cnn"
    edit_params(repo, **{f"models.{kind}.{name}.target_accuracy": target})
    rerun = run(["dvc", "repro"], repo)
    assert f"train_{kind}@{name}" in stages_run(rerun.stdout)

    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert summary["replicates"][name]["meets_target_on_mean"] == (mean >= target)
    assert (mean >= target) != (zero >= target)
    row = next(line for line in (repo / "reports" / "report.md").read_text().splitlines()
               if line.startswith(f"| {name} "))  # fmt: skip
    assert f"{100 * target:.2f}% {'✓' if mean >= target else '✗'}" in row

    before = load_model(replicated["before"] / f"{name}.keras").get_weights()
    after = load_model(repo / "models" / f"{name}.keras").get_weights()
    assert len(before) == len(after)
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))
