"""The baseline's predictions read through DVC from a committed revision, or reported missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import baseline
from tests.support import run

LABELS = np.array([0, 1, 2, 3])
PROBABILITIES = np.eye(10, dtype=np.float32)[[0, 1, 2, 2]]  # the last image is wrong


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A git + DVC repository whose HEAD has one model's metrics.json (in git) and
    probabilities.npz (in DVC's cache), as the evaluate stage leaves them."""
    reports = tmp_path / "reports" / "models" / "m"
    reports.mkdir(parents=True)
    (reports / "metrics.json").write_text(json.dumps({"test_accuracy": 0.75}))
    np.savez_compressed(reports / "probabilities.npz", test=PROBABILITIES, y_test=LABELS)
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["dvc", "init", "-q"],
        ["dvc", "add", "-q", "reports/models/m/probabilities.npz"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "baseline"],
    ):
        run(args, tmp_path)
    return tmp_path


def test_predictions_come_from_the_revision_through_dvc(committed: Path) -> None:
    # the workspace's copy is gone: DVC reads the committed revision's cached output
    (committed / "reports/models/m/probabilities.npz").unlink()

    found = baseline.read(["m", "new"], "HEAD", committed)

    np.testing.assert_array_equal(found.predictions["m"], [0, 1, 2, 2])
    np.testing.assert_array_equal(found.labels, LABELS)
    assert found.accuracies == {"m": 0.75}  # "new" is not in the revision
    assert found.missing == ()


def test_predictions_in_neither_cache_nor_remote_are_named_missing(committed: Path) -> None:
    shutil.rmtree(committed / ".dvc" / "cache")
    (committed / "reports/models/m/probabilities.npz").unlink()

    found = baseline.read(["m"], "HEAD", committed)

    assert found.missing == ("m",)
    assert found.predictions == {} and found.accuracies == {"m": 0.75}


def test_unreadable_baseline_files_count_as_missing(committed: Path) -> None:
    (committed / "reports/models/m/probabilities.npz").unlink()
    (committed / "reports/models/m/probabilities.npz").write_bytes(b"not a zip")
    (committed / "reports/models/n").mkdir()
    (committed / "reports/models/n/metrics.json").write_text("{")
    for args in (
        ["dvc", "add", "-q", "reports/models/m/probabilities.npz"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "broken"],
    ):
        run(args, committed)

    found = baseline.read(["m", "n"], "HEAD", committed)

    assert found.missing == ("m",) and found.accuracies == {"m": 0.75}


def test_an_unknown_revision_gives_an_empty_baseline(committed: Path) -> None:
    found = baseline.read(["m"], "no-such-rev", committed)

    assert found == baseline.Baseline("no-such-rev")


def test_the_revision_is_dvcs_experiment_baseline_else_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    assert baseline.revision() == "abc123"
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    head = run(["git", "rev-parse", "HEAD"], Path(__file__).parent).stdout.strip()
    assert baseline.revision() == head
