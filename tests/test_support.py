"""Tests of tests/support.py: the repo copy, the command environment, the params editors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import paths
from pipeline.config import load_params
from pipeline.errors import DataError
from tests.support import (
    CommandError,
    command_env,
    copy_repository,
    edit_params,
    mnist_mirror,
    run,
    stages_run,
    write_small_params,
)


def test_stages_run_reads_the_stage_names_of_a_repro_output() -> None:
    output = (
        "Running stage 'download':\n> python -m pipeline.stages.download\n"
        "Stage 'preprocess' didn't change, skipping\n"
        "Running stage 'train_cnn@tiny_cnn':\nData and pipelines are up to date.\n"
    )
    assert stages_run(output) == ["download", "train_cnn@tiny_cnn"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A folder holding a copy of the real params.yaml."""
    (tmp_path / "params.yaml").write_text(paths.PARAMS.read_text())
    return tmp_path


def test_write_small_params_gives_valid_tiny_params(repo: Path) -> None:
    write_small_params(repo, train_limit=600)
    params = load_params(repo / "params.yaml")
    assert set(params.models) == {"tiny_mlp", "tiny_cnn"}
    assert params.preprocess.train_limit == 600
    assert params.model("tiny_cnn").train.epochs == 1


def test_write_small_params_can_keep_every_model_at_one_epoch(repo: Path) -> None:
    write_small_params(repo, models=None, tracking={"log_model": False})
    params, real = load_params(repo / "params.yaml"), load_params(paths.PARAMS)
    assert set(params.models) == set(real.models)
    assert {params.model(name).train.epochs for name in params.models} == {1}
    assert params.tracking.log_model is False
    assert params.tracking.experiment == real.tracking.experiment


def test_edit_params_sets_dotted_keys_and_returns_the_old_bytes(repo: Path) -> None:
    before = (repo / "params.yaml").read_bytes()
    old = edit_params(repo, **{"seed": 7, "train.epochs": 2})
    params = load_params(repo / "params.yaml")
    assert (params.seed, params.train.epochs) == (7, 2)
    assert old == before


def test_missing_mnist_copy_is_one_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setattr(paths, "ROOT", tmp_path / "repo")
    with pytest.raises(DataError, match="set MNIST_MIRROR") as error:
        mnist_mirror()
    assert "\n" not in str(error.value)


def test_copy_repository_copies_sources_but_not_outputs(tmp_path: Path) -> None:
    copy = copy_repository(tmp_path / "copy")
    assert (copy / "params.yaml").read_bytes() == paths.PARAMS.read_bytes()
    assert (copy / "tests" / "support.py").is_file()
    assert not (copy / "dvc.lock").exists()
    assert not (copy / "data").exists()
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=copy, capture_output=True, text=True, check=True
    )
    assert len(log.stdout.splitlines()) == 1


def test_a_failed_command_is_one_line_naming_its_last_output_line(tmp_path: Path) -> None:
    code = "import sys; print('first'); sys.exit('the reason')"
    with pytest.raises(CommandError) as error:
        run([sys.executable, "-c", code], tmp_path)
    assert str(error.value).endswith("exited 1: the reason")
    assert "\n" not in str(error.value)


def test_command_env_puts_this_venv_first_and_drops_outer_dvc_and_mlflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DVC_ROOT", "/elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    env = command_env(tmp_path, EXTRA="1")
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "DVC_ROOT" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["MNIST_MIRROR"] == str(tmp_path)
    assert env["EXTRA"] == "1"
