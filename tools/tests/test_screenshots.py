"""Tests of tools.screenshots: the UI routes, the id look-up, a real capture, expected faults."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from pipeline import paths
from pipeline.errors import PipelineError
from tests.support import mlflow_server
from tools import screenshots

TARGETS = screenshots.Targets(
    experiment_id="7",
    champion_run_id="c" * 32,
    model_run_ids=["a" * 32, "c" * 32],
    confusion_path="evaluation/figures/confusion_errors.png",
)


def _route(url: str) -> tuple[str, dict[str, list[str]]]:
    """The hash route of a UI URL and its query."""
    route = urlsplit(url).fragment
    path, _, query = route.partition("?")
    return path, parse_qs(query)


def test_shots_use_the_ui_routes() -> None:
    pages = {shot.file: shot for shot in screenshots.shots("http://127.0.0.1:1", TARGETS)}
    assert set(pages) == {
        "mlflow-runs.png",
        "mlflow-confusion.png",
        "mlflow-compare.png",
        "mlflow-charts.png",
    }
    assert _route(pages["mlflow-runs.png"].url)[0] == "/experiments/7/runs"
    assert _route(pages["mlflow-confusion.png"].url)[0] == (
        f"/experiments/7/runs/{'c' * 32}/artifacts/evaluation/figures/confusion_errors.png"
    )
    path, query = _route(pages["mlflow-compare.png"].url)
    assert path == "/compare-runs"
    assert json.loads(query["runs"][0]) == TARGETS.model_run_ids
    assert json.loads(query["experiments"][0]) == ["7"]
    path, query = _route(pages["mlflow-charts.png"].url)
    assert (path, query["compareRunsMode"]) == ("/experiments/7/runs", ["CHART"])
    assert all(run_id in unquote(query["searchFilter"][0]) for run_id in TARGETS.model_run_ids)


def test_ui_preferences_name_the_experiment() -> None:
    preferences = screenshots.ui_preferences("7")
    state = preferences['MLflowLocalStorage-1.1-ExperimentPage-["7"]-ReactComponentState']
    assert "metrics.`test_accuracy`" in state["selectedColumns"]
    assert preferences["mlflow.assistant.panelOpen_v1"] is False


def _store_with_a_champion(uri: str) -> tuple[str, str, list[str]]:
    """An experiment with two model runs, an older and a newer report run, and a champion."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment("mnist-pipeline")
    runs = {}
    for name in ("mlp_a", "cnn_b"):
        run_id = client.create_run(experiment_id, run_name=name).info.run_id
        client.log_text(run_id, "not a png", "evaluation/figures/confusion.png")
        runs[name] = run_id
    stale = client.create_run(experiment_id, run_name="report").info.run_id
    client.set_tag(stale, "pipeline.stage", "report")
    client.set_tag(stale, "pipeline.run.mlp_a", "0" * 32)
    report = client.create_run(experiment_id, run_name="report").info.run_id
    client.set_tag(report, "pipeline.stage", "report")
    for name, run_id in runs.items():
        client.set_tag(report, f"pipeline.run.{name}", run_id)
    client.create_registered_model("mnist-champion")
    version = client.create_model_version(
        "mnist-champion",
        source=f"runs:/{runs['cnn_b']}/model",
        run_id=runs["cnn_b"],
        tags={"pipeline.run_id": runs["cnn_b"]},
    )
    client.set_registered_model_alias("mnist-champion", "champion", version.version)
    return experiment_id, runs["cnn_b"], [runs["cnn_b"], runs["mlp_a"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a store of its own."""
    with mlflow_server(tmp_path_factory.mktemp("server")) as uri:
        yield uri


def test_find_targets_reads_the_champion_and_the_newest_report(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment_id, champion, model_runs = _store_with_a_champion(server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    targets = screenshots.find_targets("mnist-pipeline", "mnist-champion")
    with pytest.raises(PipelineError, match="no registered model other@champion"):
        screenshots.find_targets("mnist-pipeline", "other")
    with pytest.raises(PipelineError, match="no MLflow experiment 'other'"):
        screenshots.find_targets("other", "mnist-champion")
    assert targets == screenshots.Targets(
        experiment_id, champion, model_runs, "evaluation/figures/confusion.png"
    )


@pytest.mark.skipif(not Path(screenshots.CHROMIUM).is_file(), reason="no system Chromium")
def test_capture_takes_a_real_picture_of_the_runs_page(server: str, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=server)
    experiment_id = client.create_experiment("capture")
    runs = [client.create_run(experiment_id, run_name=name).info.run_id for name in ("a", "b")]
    for run_id in runs:
        client.log_metric(run_id, "test_accuracy", 0.9)
    targets = screenshots.Targets(experiment_id, runs[0], runs, "unused.png")
    (runs_page,) = [s for s in screenshots.shots(server, targets) if s.file == "mlflow-runs.png"]
    preferences = screenshots.ui_preferences(experiment_id)
    (written,) = screenshots.capture([runs_page], tmp_path / "docs", preferences)
    assert written == tmp_path / "docs" / "mlflow-runs.png"
    with Image.open(written) as image:
        assert image.format == "PNG"
        assert image.size == (screenshots.WIDTH, screenshots.HEIGHT)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 100  # text, icons and the table: not a blank or one-colour page


def test_no_store_yet_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setattr(screenshots, "CHROMIUM", "/bin/true")
    assert screenshots.main(["--out", str(tmp_path / "docs")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{tmp_path / 'mlflow' / 'mlflow.db'}: no MLflow store yet" in error
    assert not (tmp_path / "docs").exists()


def test_missing_chromium_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(screenshots, "CHROMIUM", str(tmp_path / "chromium"))
    assert screenshots.main(["--out", str(tmp_path / "docs")]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'chromium'} not found; install it (apt-get install chromium)\n"
    )


def test_help_writes_nothing_and_imports_no_mlflow_or_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys; from tools import screenshots\n"
        "try:\n    screenshots.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('tensorflow' in sys.modules, 'mlflow' in sys.modules, 'playwright' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True, check=True
    )
    assert "--out" in done.stdout
    assert done.stdout.split()[-3:] == ["False", "False", "False"]
