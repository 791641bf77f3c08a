"""The GPU check's dry run and its install step, on a CPU with the same wheel folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO_ROOT, pipeline_env
from tools.gpu_check.check import WHEELS, install_steps, model_order, table, wheels


def test_dry_run_lists_the_wheels_with_their_size_and_every_stage_in_order(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name, size in (
        ("keras-3.15.1-py3-none-any.whl", 2**20),
        ("namex-0.1.0-py3-none-any.whl", 2**19),
    ):
        (folder / name).write_bytes(b"\0" * size)
    done = subprocess.run(
        [sys.executable, "-m", "tools.gpu_check", "--dry-run", "--wheels", str(folder),
         "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, env=pipeline_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"wheels in {folder} (2, 1.5 MiB):"
    assert "  keras-3.15.1-py3-none-any.whl (1.0 MiB)" in lines
    assert any("pip install" in line and "--no-index" in line for line in lines)
    assert "runner.backend=jax runner.device=gpu" in done.stdout
    stages = [
        line.split("-m pipeline.stages.")[1].rstrip(")")
        for line in lines
        if "-m pipeline.stages." in line
    ]
    models = model_order(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    assert stages == [
        "download",
        "preprocess",
        *(f"train {m}" for m in models),
        *(f"evaluate {m}" for m in models),
    ]
    assert not (tmp_path / "out").exists()  # a dry run runs nothing


@pytest.mark.skipif(
    not wheels(), reason=f"no wheels in {WHEELS}: run tools/gpu_check/fetch_wheels.sh"
)
def test_install_step_installs_every_carried_wheel_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for step in install_steps(site):
        assert "--no-index" in step.args
        done = subprocess.run(step.args, cwd=step.cwd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    carried = {w.name.split("-")[0].lower() for w in wheels()}
    assert installed == carried
    for package in ("keras", "mlflow", "pipeline", "pydantic_core", "sqlalchemy"):
        assert (site / package / "__init__.py").is_file()
    assert list((site / "pydantic_core").glob("*cpython-312-x86_64-linux-gnu.so"))


def test_table_marks_a_model_below_its_target_and_sums_the_train_time() -> None:
    rows = [
        {"model": "good", "epochs": 2, "train_seconds": 1.5, "val_accuracy": 0.99,
         "test_accuracy": 0.991, "target": 0.99, "device": "NVIDIA H200"},
        {"model": "short", "epochs": 3, "train_seconds": 2.0, "val_accuracy": 0.95,
         "test_accuracy": 0.95, "target": 0.96, "device": "NVIDIA H200"},
    ]  # fmt: skip
    lines = table(rows, "title").splitlines()
    assert lines[0] == "title"
    assert lines[3].split() == ["good", "2", "1.5", "0.9900", "0.9910", "0.9900", "NVIDIA", "H200"]
    assert "0.9600!" in lines[4]
    assert lines[5].split()[:2] == ["total", "3.5"]
