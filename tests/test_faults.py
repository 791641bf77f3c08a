"""Faults of a careless or hostile user: a failed stage keeps its last good outputs under
`dvc repro`, a gzip bomb fails in one line with bounded memory, a read-only, locked or full
tracking store is named in one line, and neither DVC nor MLflow reports usage from a run."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.config import TrackingConfig
from pipeline.data import decompress
from pipeline.entry import exit_code
from pipeline.errors import DataError, TrackingError
from tests.support import (
    TINY_MODELS,
    copy_repository,
    pipeline_env,
    run,
    tracking_requests,
    write_small_params,
)

REQUESTS = tracking_requests()
CONFIG = TrackingConfig(
    experiment="faults", registered_model="faults-model", log_model=False, **REQUESTS
)
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
MNIST_IMAGES_HEADER = bytes([0, 0, 0x08, 3]) + b"".join(
    size.to_bytes(4, "big") for size in (60000, 28, 28)
)
MNIST_IMAGES_BYTES = len(MNIST_IMAGES_HEADER) + 60000 * 28 * 28
# Variables under which DVC or MLflow stay quiet on their own (a test run, CI): a user has none.
QUIETING = (
    "PYTEST_CURRENT_TEST",
    "CI",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "JENKINS_URL",
    "TRAVIS",
    "BUILDKITE",
    "DVC_TEST",
    "DVC_NO_ANALYTICS",
    "DO_NOT_TRACK",
    "MLFLOW_DISABLE_TELEMETRY",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
)
# Runs the command in argv; prints its peak RSS (KiB on Linux) and exit code.
PEAK_RSS = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)
MODEL_OUTPUTS = (
    "models/tiny_mlp.keras",
    "reports/models/tiny_mlp/history.csv",
    "reports/models/tiny_mlp/train.json",
    "dvc.lock",
)


# ---------------------------------------------------------------------------- helpers


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A stage's environment as a user has it: HOME in `home`, nothing that silences reporting."""
    env = pipeline_env(HOME=str(home), **extra)
    for name in QUIETING:
        env.pop(name, None)
    return env


def one_error_line(done: subprocess.CompletedProcess[str] | str, *expected: str) -> str:
    """The one `error: ` line of a failed command's stderr (no traceback); it holds `expected`."""
    stderr = done if isinstance(done, str) else done.stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def set_param(repo: Path, dotted: str, value: object) -> bytes:
    """Set one dotted key in the copy's params.yaml; return the old bytes."""
    old = (repo / "params.yaml").read_bytes()
    params = yaml.safe_load(old)
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return old


def snapshot(repo: Path, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {name: hashlib.sha256((repo / name).read_bytes()).hexdigest() for name in names}


def write_gzip_bomb(path: Path, zero_bytes: int) -> None:
    """MNIST's train-images header, then `zero_bytes` zeros, gzipped as repeated 1 MiB members:
    a 2 MB file that inflates to gigabytes, written without holding them."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    with path.open("wb") as file:
        file.write(gzip.compress(MNIST_IMAGES_HEADER))
        for _ in range(zero_bytes >> 20):
            file.write(member)


@contextmanager
def exclusive(database: Path) -> Iterator[None]:
    """Hold an exclusive SQLite transaction on `database`, as another process would."""
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# ---------------------------------------------------------------------------- a repository copy


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """A copy with tiny params and no public mirrors (a fault must not reach the network)."""
    repo = copy_repository(tmp_path_factory.mktemp("faults") / "repo")
    write_small_params(repo, train_limit=600, data={"mirrors": []}, tracking={"log_model": False})
    return repo


@pytest.fixture(scope="module")
def trained(repo: Path, home: Path) -> Path:
    """The copy after a good `dvc repro` of download, preprocess and the tiny MLP's training."""
    run(["dvc", "repro", "train_mlp@tiny_mlp"], repo, user_env(home))
    return repo


# ---------------------------------------------------------------------------- DVC keeps outputs


@pytest.mark.e2e
def test_a_params_error_under_dvc_repro_keeps_the_last_good_outputs(
    trained: Path, home: Path
) -> None:
    before = snapshot(trained, MODEL_OUTPUTS)
    old = set_param(trained, "models.mlp.tiny_mlp.dropout", 1.5)
    try:
        failed = run(["dvc", "repro", "train_mlp@tiny_mlp"], trained, user_env(home), check=False)
        status = run(["dvc", "status", "train_mlp@tiny_mlp"], trained, user_env(home))
    finally:
        (trained / "params.yaml").write_bytes(old)
    assert failed.returncode != 0
    one_error_line(failed, "models.mlp.tiny_mlp.dropout", "1.5")
    assert snapshot(trained, MODEL_OUTPUTS) == before
    # DVC recorded nothing and says what changed: the stage is due, not up to date.
    assert "train_mlp@tiny_mlp" in status.stdout and "models.mlp.tiny_mlp" in status.stdout


@pytest.mark.e2e
def test_wrong_mirror_files_under_forced_repro_keep_data_raw(
    trained: Path, home: Path, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in yaml.safe_load((trained / "params.yaml").read_text())["data"]["files"].values():
        (wrong / name["name"]).write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 7])))
    raw = sorted(str(p.relative_to(trained)) for p in (trained / "data" / "raw").iterdir())
    assert len(raw) == 4
    before = snapshot(trained, [*raw, "dvc.lock"])
    failed = run(
        ["dvc", "repro", "-f", "download"],
        trained,
        user_env(home, MNIST_MIRROR=str(wrong)),
        check=False,
    )
    assert failed.returncode != 0
    one_error_line(failed, f"could not fetch {TRAIN_IMAGES}", "sha256 mismatch")
    assert snapshot(trained, [*raw, "dvc.lock"]) == before
    status = run(["dvc", "status", "download"], trained, user_env(home))
    assert "up to date" in status.stdout


@pytest.mark.e2e
def test_evaluate_recreates_the_run_of_a_training_the_store_could_not_tag(
    trained: Path, home: Path
) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist-pipeline").experiment_id
    model_sha = hashlib.sha256((trained / "models" / "tiny_mlp.keras").read_bytes()).hexdigest()
    tagged = f"tags.`pipeline.model_sha256` = '{model_sha}'"
    [training] = client.search_runs([experiment], filter_string=tagged)
    client.delete_tag(training.info.run_id, "pipeline.model_sha256")  # as a store fault leaves it

    run(["python", "-m", "pipeline.stages.evaluate", "tiny_mlp"], trained, user_env(home))
    [evaluated] = client.search_runs([experiment], filter_string=tagged)
    assert evaluated.info.run_id != training.info.run_id
    assert evaluated.data.tags["pipeline.model"] == "tiny_mlp"
    assert "test_accuracy" in evaluated.data.metrics


# ---------------------------------------------------------------------------- privacy


@pytest.mark.e2e
def test_no_usage_reports_or_ids_in_the_home_folder(trained: Path, home: Path) -> None:
    words = ("mlflow", "dvc", "iterative", "telemetry", "analytics")
    found = [
        str(path.relative_to(home))
        for path in home.rglob("*")
        if any(word in str(path.relative_to(home)).lower() for word in words)
    ]
    assert found == []
    # Those switches are what kept them away: without them both would report here.
    probe = (
        "import sys, dvc.analytics, mlflow.telemetry.utils as t; "
        "print(dvc.analytics.is_enabled(), t.is_telemetry_disabled())"
    )
    outside = run([sys.executable, "-c", probe], home, user_env(home)).stdout.split()
    assert outside == ["True", "False"]
    ours = "import pipeline.tracking; " + probe
    inside = run([sys.executable, "-c", ours], trained, user_env(home)).stdout.split()
    assert inside == ["False", "True"]


# ---------------------------------------------------------------------------- bounded inputs


def test_decompress_refuses_a_header_declaring_more_than_the_limit() -> None:
    with pytest.raises(DataError) as caught:
        decompress(gzip.compress(MNIST_IMAGES_HEADER), "m/f.gz", max_bytes=10_000_000)
    assert str(caught.value) == (
        f"m/f.gz: IDX header declares {MNIST_IMAGES_BYTES:,} bytes, "
        "more than data.max_idx_bytes (10,000,000)"
    )


@pytest.mark.parametrize("packed", [False, True])
def test_decompress_refuses_content_beyond_the_declared_size_or_the_limit(packed: bool) -> None:
    labels = bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])
    wrap = gzip.compress if packed else bytes
    assert decompress(wrap(labels), "f", max_bytes=100) == labels
    with pytest.raises(DataError, match=r"^f: holds more than the 11 bytes its IDX header decl"):
        decompress(wrap(labels + bytes(50)), "f", max_bytes=100)
    with pytest.raises(DataError, match=r"^f: holds more than data.max_idx_bytes \(20 bytes\)$"):
        decompress(wrap(b"\x01" * 30), "f", max_bytes=20)  # no IDX header to go by


def test_a_gzip_bomb_mirror_fails_in_one_line_under_1_gib(repo: Path, tmp_path: Path) -> None:
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    write_gzip_bomb(bombs / TRAIN_IMAGES, zero_bytes=2 << 30)  # inflates to 2 GiB
    assert (bombs / TRAIN_IMAGES).stat().st_size < 4 << 20
    raw = sorted(str(path.relative_to(repo)) for path in (repo / "data" / "raw").glob("*"))
    before = snapshot(repo, raw)
    # A small parent forks the stage: a child forked from pytest would count pytest's memory.
    done = run(
        [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "pipeline.stages.download"],
        repo,
        pipeline_env(MNIST_MIRROR=str(bombs)),
        check=False,
    )
    peak_kib, returncode = map(int, done.stdout.split()[-2:])
    peak = peak_kib * 1024
    print(f"gzip bomb: peak RSS {peak / 2**20:.0f} MiB")
    assert returncode == 1
    one_error_line(
        done,
        f"could not fetch {TRAIN_IMAGES}",
        f"holds more than the {MNIST_IMAGES_BYTES:,} bytes its IDX header declares",
    )
    assert peak < 1 << 30
    assert snapshot(repo, raw) == before  # data/raw as it was (absent, or a good download)


# ---------------------------------------------------------------------------- tracking store


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SQLite store holding the experiment, named by MLFLOW_TRACKING_URI; its database file."""
    database = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    tracking.connect(CONFIG)
    return database


def test_a_read_only_store_is_named_in_one_line(
    store: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # Opened read-only as SQLite opens a read-only file (chmod does not stop root).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///file:{store}?mode=ro&uri=true")
    # MLflow makes the database's folder as if `file:/...` were a relative path: not in ours.
    monkeypatch.chdir(tmp_path)

    def work() -> None:
        with tracking.start_run(tracking.connect(CONFIG), "read-only", {}):
            pass

    capfd.readouterr()
    assert exit_code(work) == 1
    one_error_line(capfd.readouterr().err, "cannot open a run", "read-only", "readonly database")


def test_a_locked_store_is_named_in_one_line(
    store: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}?timeout=0.2")
    capfd.readouterr()
    with exclusive(store):
        assert exit_code(lambda: tracking.connect(CONFIG)) == 1
    one_error_line(capfd.readouterr().err, str(store), "locked by another process")


def test_a_store_locked_mid_run_fails_the_run_with_one_line(
    store: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}?timeout=0.2")
    experiment = tracking.connect(CONFIG)
    capfd.readouterr()
    with tracking.start_run(experiment, "locked", {}) as run:
        run.log_metrics({"loss": 0.5}, step=1)
        with exclusive(store):
            run.log_metrics({"loss": 0.25}, step=2)
    assert tracking.run_status(run.run_id) == "FAILED"  # not FINISHED with a metric missing
    assert exit_code(run.raise_failures) == 1
    one_error_line(capfd.readouterr().err, "log_metrics step 2", "locked by another process")


def test_a_full_disk_is_named(tmp_path: Path) -> None:
    database = sqlite3.connect(tmp_path / "small.db")
    database.execute("PRAGMA max_page_count = 4")  # SQLite's own "disk is full" beyond 4 pages
    database.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.OperationalError) as full:
        database.executemany("INSERT INTO t VALUES (?)", [(np.zeros(4096).tobytes(),)] * 8)
    try:
        raise MlflowException("(sqlite3.OperationalError) ...\n[SQL: INSERT ...]") from full.value
    except MlflowException as wrapped:
        error = TrackingError(f"MLflow store: {tracking._one_line(wrapped)}")
    assert str(error) == "MLflow store: the disk is full: database or disk is full"


# ---------------------------------------------------------------------------- names and shells

HOSTILE_NAME = "x;touch PWNED;"


@pytest.fixture
def hostile_repo(tmp_path: Path) -> Path:
    """A copy whose one MLP is named `x;touch PWNED;`, committed (as `dvc exp run` needs)."""
    repo = copy_repository(tmp_path / "repo")
    models = {"mlp": {HOSTILE_NAME: TINY_MODELS["mlp"]["tiny_mlp"]}, "cnn": {}}
    write_small_params(repo, models=models, tracking={"log_model": False})
    # The stage fails on the name before it reads the dataset; DVC only checks that it exists.
    (repo / "data" / "processed").mkdir(parents=True)
    (repo / "data" / "processed" / "dataset.npz").write_bytes(b"not read")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "hostile name"], repo)
    return repo


@pytest.mark.e2e
# repro: the train stage alone; exp run: from a clean checkout, download and preprocess first.
@pytest.mark.parametrize("command", [["dvc", "repro", "-s"], ["dvc", "exp", "run"]])
def test_a_model_name_never_reaches_a_shell(
    hostile_repo: Path, home: Path, command: list[str], mirror: Path
) -> None:
    params = snapshot(hostile_repo, ["params.yaml"])
    started = time.monotonic()
    failed = run(
        [*command, f"train_mlp@{HOSTILE_NAME}"], hostile_repo, user_env(home), check=False
    )
    assert time.monotonic() - started < 300
    assert failed.returncode != 0
    assert not (hostile_repo / "PWNED").exists(), failed.stdout
    one_error_line(failed, f"models.mlp.{HOSTILE_NAME!r}", "a model name must match")
    assert snapshot(hostile_repo, ["params.yaml"]) == params
    assert not (hostile_repo / "dvc.lock").exists()
    assert not (hostile_repo / "mlflow" / "mlflow.db").exists()


# ---------------------------------------------------------------------------- relative stores


@pytest.mark.parametrize(
    ("named", "resolved"),
    [
        ("sqlite:///rel.db", "sqlite:///{root}/rel.db"),
        ("sqlite:///sub/rel.db?timeout=5", "sqlite:///{root}/sub/rel.db?timeout=5"),
        ("sqlite:////abs/store.db", "sqlite:////abs/store.db"),
        ("file:runs", "file://{root}/runs"),
        ("file:///abs/runs", "file:///abs/runs"),
        ("runs", "{root}/runs"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_a_relative_store_is_resolved_against_the_workspace(
    named: str, resolved: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not the workspace: a stage of `dvc exp run --temp`
    monkeypatch.setenv("DVC_ROOT", "/work/space")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", named)
    assert tracking.tracking_uri() == resolved.format(root="/work/space")


@pytest.mark.e2e
def test_a_relative_sqlite_store_keeps_the_runs_of_a_temp_experiment(
    tmp_path: Path, home: Path, mirror: Path
) -> None:
    repo = copy_repository(tmp_path / "repo")
    write_small_params(repo, train_limit=300, models={"mlp": TINY_MODELS["mlp"], "cnn": {}})
    run(["git", "commit", "-qam", "small"], repo)
    env = user_env(home, MLFLOW_TRACKING_URI="sqlite:///rel.db")
    started = time.monotonic()
    command = ["dvc", "exp", "run", "--temp", "-S", "models.mlp.tiny_mlp.dropout=0.3"]
    run([*command, "train_mlp@tiny_mlp"], repo, env)
    assert time.monotonic() - started < 600
    assert not list((repo / ".dvc" / "tmp" / "exps").glob("*/rel.db"))
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'rel.db'}")
    experiment = client.get_experiment_by_name("mnist-pipeline")
    (trained,) = client.search_runs([experiment.experiment_id])
    assert trained.info.status == "FINISHED"
    assert trained.data.params["model.dropout"] == "0.3"
    # The logged model lies beside the store, not in the deleted temporary copy.
    artifacts = Path(client.get_run(trained.info.run_id).info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(repo / "rel-artifacts")
    assert any(artifacts.rglob("MLmodel")) or any((repo / "rel-artifacts").rglob("MLmodel"))


# ---------------------------------------------------------------------------- a hanging server


@contextmanager
def hanging_server(hang_seconds: float = 120) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 whose /health answers 200 and whose every other request gets
    no answer for `hang_seconds` (or until the server stops); yields its URL."""
    import http.server
    import threading

    stopping = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if self.path.startswith("/health"):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")
                return
            stopping.wait(hang_seconds)  # bounded: the server stops itself at the latest then

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_a_server_that_never_answers_fails_training_within_seconds(
    trained: Path, home: Path
) -> None:
    requests = tracking_requests()
    timeout, retries = requests["request_timeout_seconds"], requests["request_retries"]
    bound = timeout * (retries + 1) + requests["request_backoff_seconds"] * (2**retries - 1)
    before = snapshot(trained, MODEL_OUTPUTS)
    with hanging_server() as url:
        started = time.monotonic()
        failed = run(
            ["dvc", "repro", "-f", "-s", "train_mlp@tiny_mlp"],
            trained,
            user_env(home, MLFLOW_TRACKING_URI=url),
            check=False,
        )
        elapsed = time.monotonic() - started
    assert failed.returncode != 0
    one_error_line(failed, f"MLflow tracking store {url}", "request_timeout_seconds")
    # MLflow's bounded tries, plus the stage's start (Python, TensorFlow, DVC): well under 2 min
    assert bound <= elapsed < bound + 60, elapsed
    assert snapshot(trained, MODEL_OUTPUTS) == before


# ---------------------------------------------------------------------------- XLA that is not on


@pytest.mark.e2e
def test_xla_with_op_determinism_fails_in_one_line_naming_both_keys(
    trained: Path, home: Path
) -> None:
    before = snapshot(trained, MODEL_OUTPUTS)
    old = set_param(trained, "runner.jit_compile", True)
    try:
        started = time.monotonic()
        failed = run(["dvc", "repro", "train_mlp@tiny_mlp"], trained, user_env(home), check=False)
        elapsed = time.monotonic() - started
    finally:
        (trained / "params.yaml").write_bytes(old)
    assert failed.returncode != 0 and elapsed < 120
    one_error_line(failed, "runner.jit_compile: true", "runner.deterministic: false")
    assert snapshot(trained, MODEL_OUTPUTS) == before


# ---------------------------------------------------------------------------- same weights, bytes


@pytest.mark.e2e
def test_two_trainings_in_two_folders_save_identical_bytes(
    trained: Path, home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = copy_repository(tmp_path_factory.mktemp("elsewhere") / "clone")
    (other / "params.yaml").write_bytes((trained / "params.yaml").read_bytes())
    run(["dvc", "repro", "train_mlp@tiny_mlp"], other, user_env(home))
    model = "models/tiny_mlp.keras"
    assert snapshot(other, [model]) == snapshot(trained, [model])
    lock = [yaml.safe_load((repo / "dvc.lock").read_text()) for repo in (trained, other)]
    outs = [entry["stages"]["train_mlp@tiny_mlp"]["outs"] for entry in lock]
    assert [o for o in outs[0] if o["path"] == model] == [o for o in outs[1] if o["path"] == model]


# ---------------------------------------------------------------------------- telemetry


@pytest.mark.e2e
def test_make_ui_writes_nothing_into_the_home_folder(tmp_path: Path) -> None:
    from tests.support import VENV_BIN, background_server, free_port

    repo = copy_repository(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    venv = VENV_BIN.parent
    port = free_port()
    # -o: take the venv as installed (the test must not reinstall it)
    command = ["make", "-o", f"{venv}/.installed", "ui", f"VENV={venv}", f"PORT={port}"]
    with background_server(command, f"http://127.0.0.1:{port}", tmp_path / "ui.log",
                           user_env(home), repo):  # fmt: skip
        assert requests_ok(f"http://127.0.0.1:{port}/health")
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == []


def requests_ok(url: str) -> bool:
    import requests

    return requests.get(url, timeout=10).status_code == 200


# ---------------------------------------------------------------------------- killed writers

KILLED_WRITER = (
    "import os, signal, sys\n"
    "from pathlib import Path\n"
    "from pipeline import io\n"
    "with io.atomic_path(Path(sys.argv[1])) as tmp:\n"
    "    tmp.write_bytes(b'half')\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
)


def test_the_next_write_removes_the_temp_file_of_a_killed_writer(tmp_path: Path) -> None:
    target = tmp_path / "probabilities.npz"
    target.write_bytes(b"last good")
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(target)], cwd=paths_root(), timeout=60
    )
    assert killed.returncode == -9
    (left,) = tmp_path.glob(".probabilities.*.npz")  # SIGKILL skips the cleanup
    assert target.read_bytes() == b"last good"
    from pipeline import io

    with io.atomic_path(target) as tmp:
        assert not left.exists()  # removed before the new write starts
        tmp.write_bytes(b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["probabilities.npz"]
    assert target.read_bytes() == b"new"


def paths_root() -> Path:
    from pipeline.paths import ROOT

    return ROOT
