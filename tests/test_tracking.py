"""Tests of pipeline.tracking against a temporary SQLite store and a real `mlflow server`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.config import TrackingConfig
from pipeline.errors import PipelineError, TrackingError
from pipeline.paths import ROOT
from tests.support import free_port, stop_process_group, tracking_requests
from tests.support import wait_until_healthy as wait_for_health

REQUESTS = tracking_requests()
CONFIG = TrackingConfig(
    experiment="tests", registered_model="tests-model", log_model=True, **REQUESTS
)
TAGS = {"pipeline.model": "tiny", "pipeline.stage": "train"}
SERVER_START_SECONDS = 120


# ---------------------------------------------------------------------------- helpers


def tiny_model(units: int = 2) -> keras.Model:
    """Input of 4 features -> Dense softmax: seconds to fit and log."""
    inputs = keras.Input(shape=(4,))
    outputs = keras.layers.Dense(units, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def samples(count: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(count, 4)).astype("float32"), rng.integers(0, 2, size=count)


def figure() -> Figure:
    fig = Figure()
    fig.add_subplot().plot([0, 1, 2], [2, 1, 0])
    return fig


def status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


def history(run_id: str, key: str, client: MlflowClient | None = None) -> list[tuple[int, float]]:
    """(step, value) of every point of metric `key`, by step."""
    points = (client or MlflowClient()).get_metric_history(run_id, key)
    return sorted((point.step, point.value) for point in points)


def artifact_paths(run_id: str, folder: str | None = None) -> set[str]:
    return {item.path for item in MlflowClient().list_artifacts(run_id, folder)}


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def clean_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No outer MLflow/DVC settings in, no fluent-API state (active run, URI) out."""
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_RUN_ID",
        "DVC_ROOT",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's relative defaults (./mlruns for a sqlite URI's artifacts) land in tmp, not the repo.
    monkeypatch.chdir(tmp_path)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # also unsets the MLFLOW_TRACKING_URI that MLflow exported


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite store: copies of it spare each test MLflow's schema migrations."""
    folder = tmp_path_factory.mktemp("empty-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def experiment_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty_store: Path) -> str:
    """A fresh SQLite store named by MLFLOW_TRACKING_URI, connected."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)  # a SQLite store's default artifact root is ./mlruns
    # A workspace that must stay untouched: the URI, not the workspace, decides the store.
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "workspace"))
    return tracking.connect(CONFIG)


@dataclass(frozen=True)
class Server:
    url: str
    database: Path
    artifacts: Path
    log: Path
    process: subprocess.Popen[bytes]


def launch_server(folder: Path) -> Server:
    """Start `mlflow server` on a free 127.0.0.1 port; `wait_until_healthy` before using it."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    # No job runner: it starts eight more processes that only slow the boot down.
    environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    database = folder / "server.db"
    artifacts = folder / "server-artifacts"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{database}",
        "--artifacts-destination", str(artifacts),
    ]  # fmt: skip
    log = folder / "server.log"
    with log.open("wb") as log_file:
        # Its own process group: `mlflow server` runs uvicorn as a child, stopped together.
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(f"http://127.0.0.1:{port}", database, artifacts, log, process)


def wait_until_healthy(server: Server) -> Server:
    """Poll GET /health until it answers 200; fail with the server's log if it never does."""
    try:
        wait_for_health(server.url, server.process, server.log, SERVER_START_SECONDS)
    except PipelineError as error:
        stop_server(server)
        pytest.fail(f"{error}\n{server.log.read_text()[-3000:]}")
    return server


def stop_server(server: Server) -> None:
    """Terminate the server's process group, wait for it, then for its port to refuse."""
    stop_process_group(server.process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"{server.url}/health", timeout=1)
        except requests.ConnectionError:
            return
        time.sleep(0.1)
    pytest.fail(f"mlflow server at {server.url} still answers after being stopped")


SERVER_FIXTURES = ("server", "dying_server")


@pytest.fixture(scope="module", autouse=True)
def launched_servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """Launch the servers the selected tests need when the module starts.

    A server takes tens of seconds of CPU to boot here; launched early, that overlaps the
    SQLite tests instead of adding to them.
    """
    wanted = {
        name
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        for name in getattr(item, "fixturenames", ())
        if name in SERVER_FIXTURES
    }
    servers = {name: launch_server(tmp_path_factory.mktemp(name)) for name in sorted(wanted)}
    yield servers
    for server in servers.values():
        stop_server(server)


@pytest.fixture(scope="module")
def server(launched_servers: dict[str, Server]) -> Server:
    """A real tracking server with a proxied artifact store, shared by the module."""
    return wait_until_healthy(launched_servers["server"])


@pytest.fixture
def dying_server(launched_servers: dict[str, Server]) -> Iterator[Server]:
    """A server of its own, for one test to kill."""
    server = wait_until_healthy(launched_servers["dying_server"])
    yield server
    stop_server(server)


# ---------------------------------------------------------------------------- URI resolution


def test_workspace_defaults_to_the_package_root() -> None:
    assert tracking.workspace_root() == ROOT
    assert tracking.tracking_uri().split("?")[0] == f"sqlite:///{ROOT}/mlflow/mlflow.db"


def test_dvc_root_wins_over_the_package_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking.workspace_root() == tmp_path
    assert tracking.store_dir() == tmp_path / "mlflow"
    assert tracking.tracking_uri().split("?")[0] == f"sqlite:///{tmp_path}/mlflow/mlflow.db"


def test_mlflow_tracking_uri_wins_over_dvc_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"


# ---------------------------------------------------------------------------- connect


def test_connect_creates_the_experiment_once(experiment_id: str, tmp_path: Path) -> None:
    assert tracking.connect(CONFIG) == experiment_id
    experiments = MlflowClient().search_experiments(filter_string=f"name = '{CONFIG.experiment}'")
    assert [e.experiment_id for e in experiments] == [experiment_id]
    # MLFLOW_TRACKING_URI names the store: nothing goes into the workspace's embedded one.
    assert not (tmp_path / "workspace" / "mlflow").exists()
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    assert "workspace" not in location


def test_connect_uses_the_embedded_store_of_the_workspace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    experiment_id = tracking.connect(CONFIG)
    assert tracking.connect(CONFIG) == experiment_id
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()
    artifacts = tmp_path / "mlflow" / "artifacts"
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    assert location.startswith(artifacts.as_uri())
    with tracking.start_run(experiment_id, "embedded", TAGS) as run:
        run.log_text("hello", "notes/hello.txt")
    assert run.failures == []
    written = list(artifacts.rglob("hello.txt"))
    assert [path.read_text() for path in written] == ["hello"]


def test_connect_to_an_unreachable_server_names_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    started = time.monotonic()
    with pytest.raises(TrackingError, match=uri):
        tracking.connect(CONFIG)
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------- runs


def test_run_logs_params_metrics_tags_and_artifacts(
    experiment_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")  # the cut must be ours
    table = pd.DataFrame({"digit": [0, 1, 2], "accuracy": [0.99, 0.98, 0.97]})
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.txt").write_text("b")
    (tmp_path / "summary.md").write_text("# summary")
    with tracking.start_run(experiment_id, "all-kinds", TAGS) as run:
        assert status(run.run_id) == "RUNNING"
        run.log_params({"train.epochs": 3, "models.cnn.layers": "x" * 7000})
        run.log_metrics({"loss": 0.5, "accuracy": 0.75}, step=1)
        run.log_metrics({"loss": 0.25, "accuracy": 0.875}, step=2)
        run.set_tags({"pipeline.extra": 7})
        run.log_text("some text", "notes/text.txt")
        run.log_figure(figure(), "figures/curve.png")
        run.log_table(table, "tables/per_digit.json")
        run.log_artifact(tmp_path / "summary.md")
        run.log_artifact(folder, "bundle")
    assert run.failures == []
    run.raise_failures()

    data = MlflowClient().get_run(run.run_id).data
    assert data.params["train.epochs"] == "3"
    assert data.params["models.cnn.layers"] == "x" * 6000
    assert history(run.run_id, "loss") == [(1, 0.5), (2, 0.25)]
    assert history(run.run_id, "accuracy") == [(1, 0.75), (2, 0.875)]
    assert data.tags["pipeline.extra"] == "7"
    assert data.tags["pipeline.model"] == "tiny"
    assert MlflowClient().get_run(run.run_id).info.run_name == "all-kinds"
    assert {"summary.md", "notes", "figures", "tables", "bundle"} <= artifact_paths(run.run_id)
    assert artifact_paths(run.run_id, "bundle") == {"bundle/a.txt", "bundle/b.txt"}
    png = Path(MlflowClient().download_artifacts(run.run_id, "figures/curve.png", str(tmp_path)))
    assert png.read_bytes().startswith(b"\x89PNG")
    loaded = MlflowClient().load_table(experiment_id, "tables/per_digit.json", [run.run_id])
    assert loaded[["digit", "accuracy"]].to_dict("list") == table.to_dict("list")
    assert status(run.run_id) == "FINISHED"


def test_reopened_run_continues_and_relogs_the_same_params(
    experiment_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")  # the cut must be ours
    params = {"train.epochs": 3, "long": "y" * 7000}
    with tracking.start_run(experiment_id, "resumable", TAGS) as first:
        first.log_params(params)
        first.log_metrics({"loss": 1.0}, step=1)
    with tracking.start_run(experiment_id, "resumable", TAGS, run_id=first.run_id) as second:
        assert status(second.run_id) == "RUNNING"
        second.log_params(params)  # the same values, the long one cut alike: not a change
        second.log_metrics({"loss": 0.5}, step=2)
    assert second.run_id == first.run_id
    assert first.failures == [] and second.failures == []
    assert history(first.run_id, "loss") == [(1, 1.0), (2, 0.5)]
    assert status(first.run_id) == "FINISHED"
    assert len(MlflowClient().search_runs([experiment_id])) == 1


def test_changing_a_logged_param_is_recorded_not_raised(experiment_id: str) -> None:
    with tracking.start_run(experiment_id, "changed", TAGS) as run:
        run.log_params({"train.epochs": 3})
        run.log_params({"train.epochs": 4})
    assert [failure.split(" ")[0] for failure in run.failures] == ["log_params"]
    with pytest.raises(TrackingError, match="log_params") as raised:
        run.raise_failures()
    assert tracking.tracking_uri() in str(raised.value)


def test_keyboard_interrupt_ends_the_run_killed(experiment_id: str) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        tracking.start_run(experiment_id, "ctrl-c", TAGS) as run,
    ):
        raise KeyboardInterrupt
    assert status(run.run_id) == "KILLED"


def test_an_exception_ends_the_run_failed(experiment_id: str) -> None:
    with (
        pytest.raises(ValueError, match="boom"),
        tracking.start_run(experiment_id, "crash", TAGS) as run,
    ):
        raise ValueError("boom")
    assert status(run.run_id) == "FAILED"


def test_epoch_logger_logs_every_epoch_with_a_one_based_step(experiment_id: str) -> None:
    features, labels = samples()
    with tracking.start_run(experiment_id, "fit", TAGS) as run:
        tiny_model().fit(
            features,
            labels,
            epochs=3,
            batch_size=16,
            verbose=0,
            validation_data=(features[:8], labels[:8]),
            callbacks=[tracking.EpochLogger(run)],
        )
    assert run.failures == []
    for key in ("loss", "val_accuracy"):
        points = history(run.run_id, key)
        assert [step for step, _ in points] == [1, 2, 3], key
        assert all(np.isfinite(value) for _, value in points)


def test_find_run_returns_the_newest_run_with_all_tags(experiment_id: str) -> None:
    def open_run(tags: dict[str, str]) -> str:
        with tracking.start_run(experiment_id, "search", tags) as run:
            return run.run_id

    older = open_run({"pipeline.model": "a", "pipeline.params": "1"})
    newer = open_run({"pipeline.model": "a", "pipeline.params": "1"})
    open_run({"pipeline.model": "a", "pipeline.params": "2"})
    open_run({"pipeline.model": "b", "pipeline.params": "1"})
    assert older != newer
    assert (
        tracking.find_run(experiment_id, {"pipeline.model": "a", "pipeline.params": "1"}) == newer
    )
    assert tracking.find_run(experiment_id, {"pipeline.model": "c"}) is None
    assert (
        tracking.find_run(experiment_id, {"pipeline.model": "b", "pipeline.params": "2"}) is None
    )


# ---------------------------------------------------------------------------- models


def log_tiny_model(experiment_id: str, model: keras.Model) -> tuple[str, str]:
    """Log `model` in a new run; return (run id, model URI)."""
    features, _ = samples(8)
    with tracking.start_run(experiment_id, "model", TAGS) as run:
        uri = run.log_keras_model(model, features, "tiny")
    assert run.failures == []
    assert uri is not None
    return run.run_id, uri


def test_logged_model_loads_back_and_registers_as_champion(experiment_id: str) -> None:
    model = tiny_model()
    features, _ = samples(8)
    run_id, uri = log_tiny_model(experiment_id, model)
    assert MlflowClient().get_run(run_id).data.tags["pipeline.model_uri"] == uri
    assert status(run_id) == "FINISHED"
    loaded = mlflow.keras.load_model(uri)
    np.testing.assert_allclose(
        loaded.predict(features, verbose=0), model.predict(features, verbose=0), rtol=1e-6
    )
    signature = mlflow.models.get_model_info(uri).signature
    assert signature is not None
    assert tuple(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 4)

    name = CONFIG.registered_model
    tags = {"pipeline.model": "tiny"}
    assert tracking.register_model(name, uri, tags) == "1"
    assert str(MlflowClient().get_model_version_by_alias(name, "champion").version) == "1"
    assert tracking.register_model(name, uri, tags) == "1"  # the same model: no new version
    assert len(MlflowClient().search_model_versions(f"name = '{name}'")) == 1


def test_an_experiments_version_gets_its_own_alias_and_is_promoted_on_purpose(
    experiment_id: str,
) -> None:
    name = CONFIG.registered_model
    first, first_uri = log_tiny_model(experiment_id, tiny_model())
    second, second_uri = log_tiny_model(experiment_id, tiny_model())
    assert tracking.register_model(name, first_uri, {"pipeline.model": "a"}) == "1"
    alias = tracking.experiment_alias("gummy bear/v2.1")
    assert alias == "exp-gummy-bear-v2-1"
    assert tracking.register_model(name, second_uri, {"pipeline.model": "b"}, alias) == "2"
    assert MlflowClient().get_model_version_by_alias(name, "champion").run_id == first
    found = tracking.model_version(name, alias=alias)
    assert (found["version"], found["aliases"], found["tags"]["pipeline.model"]) == (
        "2",
        [alias],
        "b",
    )
    tracking.set_alias(name, "champion", found["version"])
    assert MlflowClient().get_model_version_by_alias(name, "champion").run_id == second
    assert tracking.model_version(name, version=1)["tags"]["pipeline.model"] == "a"
    with pytest.raises(
        TrackingError, match=rf"no {name}@exp-none \(its aliases: champion, {alias}\)$"
    ):
        tracking.model_version(name, alias="exp-none")
    with pytest.raises(TrackingError, match=rf"no {name} version 9 "):
        tracking.model_version(name, version=9)


# ---------------------------------------------------------------------------- a real server


def test_a_real_server_stores_runs_artifacts_and_models(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    experiment_id = tracking.connect(CONFIG)
    assert tracking.connect(CONFIG) == experiment_id
    table = pd.DataFrame({"digit": [0, 1], "accuracy": [0.5, 0.25]})
    features, _ = samples(8)
    with tracking.start_run(experiment_id, "served", TAGS) as run:
        run.log_params({"train.epochs": 2})
        run.log_metrics({"loss": 0.5}, step=1)
        run.log_figure(figure(), "figures/curve.png")
        run.log_table(table, "tables/per_digit.json")
        uri = run.log_keras_model(tiny_model(), features, "tiny")
    assert run.failures == []
    assert uri is not None
    assert status(run.run_id) == "FINISHED"
    assert MlflowClient().get_run(run.run_id).data.params == {"train.epochs": "2"}
    assert history(run.run_id, "loss") == [(1, 0.5)]
    # The client uploaded through the server's artifact proxy into --artifacts-destination.
    written = {path.name for path in server.artifacts.rglob("*") if path.is_file()}
    assert {"curve.png", "per_digit.json", "MLmodel"} <= written
    loaded = MlflowClient().load_table(experiment_id, "tables/per_digit.json", [run.run_id])
    assert loaded[["digit", "accuracy"]].to_dict("list") == table.to_dict("list")

    assert tracking.register_model(CONFIG.registered_model, uri, {}) == "1"
    champion = MlflowClient().get_model_version_by_alias(CONFIG.registered_model, "champion")
    assert champion.run_id == run.run_id


def test_a_server_that_dies_mid_run_is_reported_at_the_end(
    dying_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dying_server.url)
    experiment_id = tracking.connect(CONFIG)
    with tracking.start_run(experiment_id, "orphaned", TAGS) as run:
        run.log_metrics({"loss": 0.5}, step=1)
        # From here on no retries and a short timeout, so calls to the dead server fail at once.
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
        stop_server(dying_server)
        started = time.monotonic()
        run.log_metrics({"loss": 0.25}, step=2)
        run.log_figure(figure(), "figures/curve.png")
        assert time.monotonic() - started < 30
    called = [failure.split(" ")[0] for failure in run.failures]
    assert called[:2] == ["log_metrics", "log_figure"]
    with pytest.raises(TrackingError, match="log_metrics") as raised:
        run.raise_failures()
    assert dying_server.url in str(raised.value)
    with pytest.raises(TrackingError, match=dying_server.url):
        tracking.connect(CONFIG)
    # What reached the server before it died is in its database.
    stored = MlflowClient(tracking_uri=f"sqlite:///{dying_server.database}")
    assert history(run.run_id, "loss", stored) == [(1, 0.5)]
