"""End to end: the real `dvc repro` in a copy of the repo on a small real subset of MNIST.

One copy is built once per session; the tests then read back what DVC and MLflow recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.support import (
    copy_repository,
    edit_params,
    mlflow_server,
    pipeline_env,
    run,
    stages_run,
    store_uri,
    write_small_params,
)

pytestmark = pytest.mark.e2e

MODELS = ("tiny_mlp", "tiny_cnn")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """A copy of the repo after a real `dvc repro`, its results committed as the baseline."""
    repo = copy_repository(tmp_path_factory.mktemp("e2e") / "repo")
    write_small_params(repo)
    run(["git", "commit", "-qam", "small params"], repo)
    first = run(["dvc", "repro"], repo)
    assert set(stages_run(first.stdout)) == {
        "download",
        "preprocess",
        "train_mlp@tiny_mlp",
        "train_cnn@tiny_cnn",
        "evaluate_mlp@tiny_mlp",
        "evaluate_cnn@tiny_cnn",
        "report",
    }, first.stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline results"], repo)
    return repo


@pytest.fixture(scope="module")
def client(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(repo))


def model_runs(client: MlflowClient, name: str) -> list:
    experiment = client.get_experiment_by_name("mnist-pipeline")
    return client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`pipeline.model` = '{name}'"
    )


def test_second_repro_runs_no_stage(repo: Path) -> None:
    again = run(["dvc", "repro"], repo)
    assert set(stages_run(again.stdout)) == set()
    assert "up to date" in again.stdout


@pytest.mark.parametrize("name", MODELS)
def test_each_model_is_one_run_with_params_curves_and_test_metrics(
    client: MlflowClient, repo: Path, name: str
) -> None:
    runs = model_runs(client, name)
    assert len(runs) == 1
    found = runs[0]
    assert found.info.status == "FINISHED"
    assert found.data.params["model.train.epochs"] == "1"
    assert found.data.params["preprocess.train_limit"] == "3000"
    assert int(found.data.params["model.parameters"]) > 0
    history = client.get_metric_history(found.info.run_id, "val_accuracy")
    assert [point.step for point in history] == [1]
    assert 0.1 < found.data.metrics["test_accuracy"] <= 1.0
    assert set(found.data.metrics) >= {f"test_accuracy_digit_{d}" for d in range(10)}
    tags = found.data.tags
    assert tags["pipeline.stage"] in ("train_mlp", "train_cnn")
    assert (
        tags["dvc.data_md5"]
        == yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["preprocess"]["outs"][0][
            "md5"
        ]
    )
    assert len(tags["git.commit"]) == 40
    assert tags["runner.device"] == "cpu"
    figures = {a.path for a in client.list_artifacts(found.info.run_id, "evaluation/figures")}
    assert {
        "evaluation/figures/confusion.png",
        "evaluation/figures/confusion_errors.png",
        "evaluation/figures/misclassified.png",
    } <= figures
    # The table MLflow's UI shows (client.load_table searches the global store, not client's).
    table_file = client.download_artifacts(found.info.run_id, "evaluation/per_digit.json")
    table = json.loads(Path(table_file).read_text())
    assert table["columns"][:2] == ["digit", "support"]
    assert [row[0] for row in table["data"]] == list(range(10))
    assert sum(row[1] for row in table["data"]) == 10_000


def test_dvc_metrics_and_plots_show(repo: Path) -> None:
    shown = run(["dvc", "metrics", "show", "--json"], repo)
    metrics = json.loads(shown.stdout)
    files = next(iter(metrics.values()))["data"]
    assert set(files) == {"reports/metrics.json"}  # the headline; per-model files are outputs
    headline = files["reports/metrics.json"]["data"]
    assert 0.1 < headline["tiny_cnn"]["test"] <= 1.0
    assert headline["champion"] in {*MODELS, "ensemble"}
    plots = run(["dvc", "plots", "show", "--json"], repo)
    assert "reports/validation_curves.csv" in plots.stdout  # one overlay of every model
    assert "reports/plots/tiny_cnn/confusion_validation.png" in plots.stdout
    assert "reports/models/tiny_cnn/history.csv" not in plots.stdout


def test_report_and_champion(client: MlflowClient, repo: Path) -> None:
    report = (repo / "reports" / "report.md").read_text()
    assert "tiny_mlp" in report and "tiny_cnn" in report
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    rows = summary["models"]
    assert set(rows) == {*MODELS, "ensemble"}
    assert rows[summary["champion"]]["val_accuracy"] == max(
        r["val_accuracy"] for r in rows.values()
    )
    version = client.get_model_version_by_alias("mnist-champion", "champion")
    assert version.tags["pipeline.model"] == summary["champion"]


def test_editing_one_model_reruns_only_its_stages(client: MlflowClient, repo: Path) -> None:
    edit_params(repo, **{"models.mlp.tiny_mlp.hidden": [48]})
    rerun = run(["dvc", "repro"], repo)
    assert set(stages_run(rerun.stdout)) == {
        "train_mlp@tiny_mlp",
        "evaluate_mlp@tiny_mlp",
        "report",
    }
    assert len(model_runs(client, "tiny_mlp")) == 2
    assert len(model_runs(client, "tiny_cnn")) == 1
    report = (repo / "reports" / "report.md").read_text()
    assert "pp" in report and "Δ: test accuracy against the baseline" in report
    env = pipeline_env()
    run(["git", "checkout", "-q", "params.yaml"], repo, env)


def test_one_model_experiment_is_tested_against_the_baseline_and_fits_160_columns(
    repo: Path,
) -> None:
    # --temp: a temporary copy of the workspace, whose report reads the baseline's predictions
    # through DVC from the committed revision (`dvc exp run` in place was checked by hand).
    run(
        ["dvc", "exp", "run", "--temp", "-n", "narrow", "-S", "models.mlp.tiny_mlp.hidden=[16]"],
        repo,
    )
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    [narrow] = [
        found["revs"][0]
        for baseline in shown
        for found in baseline.get("experiments") or []
        if found["revs"][0]["name"] == "narrow"
    ]
    headline = narrow["data"]["metrics"]["reports/metrics.json"]["data"]
    assert headline["tiny_mlp"]["Δ"] != 0.0 and 0.0 <= headline["tiny_mlp"]["p"] < 1.0
    assert headline["tiny_cnn"]["Δ"] == 0.0 and headline["tiny_cnn"]["p"] == 1.0
    # the only metrics file: no per-model columns beside it
    assert set(narrow["data"]["metrics"]) == {"reports/metrics.json"}

    table = run(
        ["dvc", "exp", "show", "--only-changed", "--no-pager"], repo, pipeline_env(COLUMNS="160")
    ).stdout
    assert max(len(line) for line in table.splitlines()) <= 160, table
    assert "models.mlp.tiny_mlp.hidden" in table and "tiny_mlp.Δ" in table, table


def test_queued_experiments_run_in_parallel_into_the_workspace_store(
    client: MlflowClient, repo: Path
) -> None:
    for name, dropout in (("q-drop-1", 0.1), ("q-drop-2", 0.2)):
        run(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                "-n",
                name,
                "-S",
                f"models.cnn.tiny_cnn.dropout={dropout}",
            ],
            repo,
        )
    done = run(["dvc", "exp", "run", "--run-all", "-j", "2"], repo)
    assert "database is locked" not in done.stdout + done.stderr
    runs = {r.data.tags.get("dvc.experiment"): r for r in model_runs(client, "tiny_cnn")}
    for name, dropout in (("q-drop-1", 0.1), ("q-drop-2", 0.2)):
        assert runs[name].info.status == "FINISHED"
        assert runs[name].data.params["model.dropout"] == str(dropout)
        assert "test_accuracy" in runs[name].data.metrics
    assert not (repo / ".dvc" / "tmp" / "exps" / "mlflow").exists()  # not in DVC's temp copies
    listed = run(["dvc", "exp", "list", "--name-only"], repo).stdout.split()
    assert {"q-drop-1", "q-drop-2"} <= set(listed)


def test_remote_tracking_server_receives_train_evaluate_and_report(
    repo: Path, tmp_path: Path
) -> None:
    with mlflow_server(tmp_path / "server") as uri:
        env = pipeline_env(MLFLOW_TRACKING_URI=uri)
        run(
            [
                "dvc",
                "repro",
                "--force",
                "--downstream",
                "train_mlp@tiny_mlp",
                "train_cnn@tiny_cnn",
            ],
            repo,
            env,
        )
        remote = MlflowClient(tracking_uri=uri)
        [found] = model_runs(remote, "tiny_mlp")
        assert "test_accuracy" in found.data.metrics
        assert len(remote.get_metric_history(found.info.run_id, "val_accuracy")) == 1
        experiment = remote.get_experiment_by_name("mnist-pipeline")
        [summary] = remote.search_runs(
            [experiment.experiment_id], filter_string="tags.`pipeline.stage` = 'report'"
        )
        assert summary.data.tags["pipeline.run.tiny_mlp"] == found.info.run_id
        champion = json.loads((repo / "reports" / "summary.json").read_text())["champion"]
        version = remote.get_model_version_by_alias("mnist-champion", "champion")
        assert version.tags["pipeline.model"] == champion
    stored = list((tmp_path / "server" / "artifacts").rglob("confusion.png"))
    assert stored, "artifacts were not proxied to the server's artifact store"
