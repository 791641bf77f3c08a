"""Tests of tools.bench.cli: arguments, import cost, and the input section end to end on a
tiny synthetic data set (nothing here trains a model or runs dvc)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import paths
from pipeline.config import load_params
from pipeline.data import raw_name, save_dataset
from tools.bench.cli import main, parse_args
from tools.bench.loading import INPUT_REPEATS
from tools.bench.sections import DEFAULT_SECTIONS


def test_full_runs_only_with_the_flag() -> None:
    assert parse_args([]).sections == list(DEFAULT_SECTIONS)
    assert parse_args(["--full", "--sections", "input"]).sections == ["full", "input"]
    with pytest.raises(SystemExit):
        parse_args(["--sections", "full"])


@pytest.mark.parametrize("argv", [["--sections", "input,nope"], ["--repeats", "0"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2


def test_importing_the_bench_does_not_import_tensorflow_or_mlflow() -> None:
    # The command line imports every section module, so this covers the whole package.
    code = (
        "import sys, tools.bench.cli; print('tensorflow' in sys.modules, 'mlflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file holding uint8 `array`."""
    header = bytes([0, 0, 0x08, array.ndim])
    return header + b"".join(size.to_bytes(4, "big") for size in array.shape) + array.tobytes()


@pytest.fixture
def tiny_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Raw IDX files and a processed .npz of a few random images, in place of the real ones."""
    rng = np.random.default_rng(0)
    files = load_params().data.files
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    arrays = {
        files.train_images.name: rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        files.train_labels.name: np.arange(60, dtype=np.uint8) % 10,
        files.test_images.name: rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        files.test_labels.name: np.arange(20, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        (raw_dir / raw_name(name)).write_bytes(idx_bytes(array))
    images = rng.random((80, 28, 28, 1), dtype=np.float32)
    labels = np.arange(80, dtype=np.int64) % 10
    dataset = tmp_path / "dataset.npz"
    save_dataset(
        dataset,
        x_train=images[:50],
        y_train=labels[:50],
        x_val=images[50:60],
        y_val=labels[50:60],
        x_test=images[60:],
        y_test=labels[60:],
        mean=0.0,
        std=1.0,
        normalize="scale",
    )
    monkeypatch.setattr(paths, "RAW_DIR", raw_dir)
    monkeypatch.setattr(paths, "DATASET", dataset)
    return tmp_path


def test_input_section_measures_both_loads_and_writes_the_json(
    tiny_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny_data / "out" / "bench.json"
    assert main(["--sections", "input", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    section = report["sections"]["input"]
    for side in ("raw", "processed"):
        assert section[f"{side}_wall_s"]["median"] > 0
        assert len(section[f"{side}_wall_s"]["runs"]) == INPUT_REPEATS
        assert section[f"{side}_verdict"] == "PASS"  # 80 images load far under 2 s
    assert set(report["sections"]) == {"input"}
    printed = capsys.readouterr().out
    assert "5. Input pipeline" in printed
    assert "data.load_dataset(data/processed/dataset.npz)" in printed
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # no temporary file left


def test_missing_dataset_is_one_line_and_exit_1_before_any_measurement(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "DATASET", tiny_data / "absent.npz")
    assert main(["--sections", "input"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {tiny_data / 'absent.npz'}: missing (section input); run `dvc repro preprocess`"
    ]
