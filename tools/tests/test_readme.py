"""Tests of tools.readme: the splice between the markers, --help, and the expected faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import paths
from pipeline.errors import PipelineError
from tools import readme


def test_splice_replaces_only_the_block_between_the_markers() -> None:
    text = f"head\n{readme.START}\nold table\n{readme.END}\ntail\n"
    assert readme.splice(text, "| new |\n") == (
        f"head\n{readme.START}\n| new |\n{readme.END}\ntail\n"
    )
    with pytest.raises(PipelineError, match="markers"):
        readme.splice("no markers here", "| new |")


def test_help_prints_the_usage_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    (tmp_path / "README.md").write_text("unchanged")
    with pytest.raises(SystemExit) as exit_info:
        readme.main(["--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m tools.readme" in capsys.readouterr().out
    assert (tmp_path / "README.md").read_text() == "unchanged"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]


def test_missing_results_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(paths, "RESULTS", tmp_path / "results.md")
    assert readme.main([]) == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'results.md'}: missing; run `dvc repro` first\n"
    )
