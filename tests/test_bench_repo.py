"""Tests of pipeline.bench.repo: the repo copy, the command environment and the tiny params."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import paths
from pipeline.bench.repo import (
    TINY_EPOCHS,
    TINY_TRAIN_LIMIT,
    command_env,
    copy_repository,
    mnist_mirror,
    shrink_params,
    stages_run,
)
from pipeline.config import load_params
from pipeline.errors import DataError


def test_stages_run_reads_the_stage_names_of_a_repro_output() -> None:
    output = (
        "Running stage 'download':\n> python -m pipeline.stages.download\n"
        "Stage 'preprocess' didn't change, skipping\n"
        "Running stage 'train_cnn@tiny_cnn':\nData and pipelines are up to date.\n"
    )
    assert stages_run(output) == ["download", "train_cnn@tiny_cnn"]


def test_shrink_params_gives_valid_tiny_params(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(paths.PARAMS.read_text())
    shrink_params(path)
    params = load_params(path)
    assert set(params.models) == {"tiny_mlp", "tiny_cnn"}
    assert params.preprocess.train_limit == TINY_TRAIN_LIMIT
    assert params.model("tiny_cnn").train.epochs == TINY_EPOCHS


def test_shrink_params_can_keep_every_model_at_one_epoch(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(paths.PARAMS.read_text())
    shrink_params(path, models=None)
    params, real = load_params(path), load_params(paths.PARAMS)
    assert set(params.models) == set(real.models)
    assert {params.model(name).train.epochs for name in params.models} == {TINY_EPOCHS}
    assert params.preprocess.train_limit == TINY_TRAIN_LIMIT
    assert params.tracking.log_model == real.tracking.log_model


def test_shrink_params_can_turn_model_logging_off(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(paths.PARAMS.read_text())
    shrink_params(path, models=None, log_model=False)
    assert load_params(path).tracking.log_model is False


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
    assert (copy / "pipeline" / "bench" / "__main__.py").is_file()
    assert not (copy / "dvc.lock").exists()
    assert not (copy / "data").exists()
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=copy, capture_output=True, text=True, check=True
    )
    assert len(log.stdout.splitlines()) == 1


def test_command_env_puts_this_venv_first_and_drops_outer_dvc_and_mlflow(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DVC_ROOT", "/elsewhere")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    env = command_env(tmp_path)
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "DVC_ROOT" not in env and "MLFLOW_TRACKING_URI" not in env
    assert env["MNIST_MIRROR"] == str(tmp_path)
