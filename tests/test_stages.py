"""Stages as a user runs them: faults end in one line and a non-zero exit, losing nothing;
an interrupted training resumes from its last completed epoch in the same MLflow run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.support import (
    copy_repository,
    edit_params,
    pipeline_env,
    run,
    store_uri,
    write_small_params,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """A copy of the repo with small params (4 epochs) and its data downloaded and processed."""
    repo = copy_repository(tmp_path_factory.mktemp("stages") / "repo")
    write_small_params(repo, train_limit=6000, epochs=4)
    run(["dvc", "repro", "preprocess"], repo)
    return repo


def stage(repo: Path, module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(
        ["python", "-m", f"pipeline.stages.{module}", *args],
        repo,
        pipeline_env(**env),
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in errors[0]


def client(repo: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(repo))


def runs_of(repo: Path, name: str) -> list:
    experiment = client(repo).get_experiment_by_name("mnist-pipeline")
    if experiment is None:
        return []
    return client(repo).search_runs(
        [experiment.experiment_id], filter_string=f"tags.`pipeline.model` = '{name}'"
    )


def test_typo_in_params_names_the_key(repo: Path) -> None:
    old = edit_params(repo, **{"train.epohcs": 3})
    try:
        done = stage(repo, "train", "tiny_mlp")
    finally:
        (repo / "params.yaml").write_bytes(old)
    assert_one_line_error(done, "train.epohcs is not a known key")


def test_unknown_model_name_is_refused(repo: Path) -> None:
    assert_one_line_error(
        stage(repo, "train", "nope"), "no model named 'nope'", "tiny_cnn, tiny_mlp"
    )


def test_gpu_without_gpu_fails_before_training_and_writes_nothing(repo: Path) -> None:
    old = edit_params(repo, **{"runner.device": "gpu"})
    try:
        done = stage(repo, "train", "tiny_mlp")
    finally:
        (repo / "params.yaml").write_bytes(old)
    assert_one_line_error(done, "runner.device is gpu")
    assert not (repo / "models" / "tiny_mlp.keras").exists()
    assert runs_of(repo, "tiny_mlp") == []


def test_unreachable_tracking_server_fails_before_training(repo: Path) -> None:
    uri = "http://127.0.0.1:9"  # the discard port: nothing listens there
    done = stage(repo, "train", "tiny_mlp", MLFLOW_TRACKING_URI=uri)
    assert_one_line_error(done, uri, "unreachable")
    assert "Epoch 1" not in done.stdout
    assert not (repo / "models" / "tiny_mlp.keras").exists()


def test_unwritable_output_folder_is_named(repo: Path) -> None:
    blocker = repo / "models"
    blocker.write_text("a file where the models folder should be")
    try:
        done = stage(repo, "train", "tiny_mlp")
    finally:
        blocker.unlink()
    assert_one_line_error(done, str(blocker))


def backed_up(repo: Path, name: str) -> bool:
    """True once the training's checkpoint holds a completed epoch it can resume from."""
    return any((repo / "checkpoints" / name).glob("*/backup/training_metadata.json"))


def history_rows(repo: Path, name: str) -> int:
    """Epochs in the training's checkpoint history (0 while none has finished)."""
    files = list((repo / "checkpoints" / name).glob("*/history.csv"))
    return max((len(f.read_text().splitlines()) - 1 for f in files), default=0)


def first_epoch(output: str) -> int:
    """The epoch a fit started from, from Keras' `Epoch N/M` lines."""
    return int(re.search(r"Epoch (\d+)/", output).group(1))


def start_and_interrupt(
    repo: Path, args: list[str], signum: int
) -> subprocess.CompletedProcess[str]:
    """Start a training, wait for its first completed epoch, then send `signum`."""
    logs = repo / "interrupted.out", repo / "interrupted.err"
    with logs[0].open("w") as out, logs[1].open("w") as err:
        process = subprocess.Popen(
            args, cwd=repo, env=pipeline_env(), stdout=out, stderr=err, start_new_session=True
        )
        deadline = time.monotonic() + 300
        while not backed_up(repo, "tiny_cnn"):
            assert process.poll() is None, logs[1].read_text()[-2000:]
            assert time.monotonic() < deadline, "no epoch completed within 300 s"
            time.sleep(0.1)
        os.killpg(process.pid, signum)
        process.wait(timeout=120)
    return subprocess.CompletedProcess(
        args, process.returncode, logs[0].read_text(), logs[1].read_text()
    )


def test_killed_dvc_repro_resumes_the_epoch_count_in_the_same_run(repo: Path) -> None:
    killed = start_and_interrupt(repo, ["dvc", "repro", "train_cnn@tiny_cnn"], signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert 1 <= history_rows(repo, "tiny_cnn") < 4
    [interrupted] = runs_of(repo, "tiny_cnn")

    resumed = run(["dvc", "repro", "train_cnn@tiny_cnn"], repo)
    assert first_epoch(resumed.stdout) >= 2
    [finished] = runs_of(repo, "tiny_cnn")
    assert finished.info.run_id == interrupted.info.run_id
    assert finished.info.status == "FINISHED"
    steps = [m.step for m in client(repo).get_metric_history(finished.info.run_id, "loss")]
    assert sorted(set(steps)) == [1, 2, 3, 4]
    history = (repo / "reports" / "models" / "tiny_cnn" / "history.csv").read_text()
    assert len(history.strip().splitlines()) == 1 + 4
    assert not list((repo / "checkpoints" / "tiny_cnn").glob("*"))  # cleared once complete


def test_sigterm_marks_the_run_killed_and_keeps_the_previous_model(repo: Path) -> None:
    model = repo / "models" / "tiny_cnn.keras"
    if not model.exists():
        run(["dvc", "repro", "train_cnn@tiny_cnn"], repo)
    before = model.read_bytes()
    old = edit_params(repo, **{"seed": 43})  # a new training, not the finished one
    try:
        stopped = start_and_interrupt(
            repo, ["python", "-m", "pipeline.stages.train", "tiny_cnn"], signal.SIGTERM
        )
        assert stopped.returncode == 143
        assert "error: interrupted by SIGTERM" in stopped.stderr
        assert model.read_bytes() == before
        newest = max(runs_of(repo, "tiny_cnn"), key=lambda r: r.info.start_time)
        assert newest.info.status == "KILLED"

        resumed = stage(repo, "train", "tiny_cnn")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert first_epoch(resumed.stdout) >= 2
        again = client(repo).get_run(newest.info.run_id)
        assert again.info.status == "FINISHED"
    finally:
        (repo / "params.yaml").write_bytes(old)
