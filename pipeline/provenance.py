"""Where a result came from: git commit, dirty tree, DVC experiment, data and model hashes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from pipeline.paths import ROOT

# dvc.lock changes while `dvc repro` runs; it is DVC's record, not a source edit.
_NOT_SOURCE = {"dvc.lock"}


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes: the hash DVC records for a single-file output."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def head_commit() -> str | None:
    """The commit HEAD points at, or None outside a git repository or before the first commit."""
    return (_git("rev-parse", "--verify", "-q", "HEAD") or "").strip() or None


def git_tags() -> dict[str, str]:
    """The commit the code came from and whether tracked sources differ from it."""
    commit = os.environ.get("DVC_EXP_BASELINE_REV") or (_git("rev-parse", "HEAD") or "").strip()
    status = _git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if line[3:] not in _NOT_SOURCE]
    tags = {"git.commit": commit or "unknown", "git.dirty": str(bool(changed)).lower()}
    if changed:
        tags["git.changed_files"] = ", ".join(changed)[:1000]
    return tags


def dvc_tags() -> dict[str, str]:
    """The DVC experiment this process runs in, if any (`dvc exp run` sets these)."""
    tags = {}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def experiment_name() -> str | None:
    """The name of the DVC experiment this process runs in (`dvc exp run`, with or without
    `--queue`/`--temp`: DVC stashes every experiment and sets DVC_EXP_NAME), else None."""
    return os.environ.get("DVC_EXP_NAME") or None


def uncommitted_sources() -> list[str]:
    """The tracked files that differ from HEAD, leaving out DVC's own records.

    "Committed" means: HEAD exists and no file git tracks differs from it (staged or not),
    except dvc.lock and the outputs dvc.yaml declares (DVC rewrites those while `dvc repro`
    runs). Untracked files do not count. A repository without a commit answers ["HEAD"].
    """
    if not (_git("rev-parse", "--verify", "-q", "HEAD") or "").strip():
        return ["HEAD"]
    status = _git("status", "--porcelain", "--untracked-files=no")
    if status is None:
        return ["HEAD"]
    outputs = _dvc_outputs()
    return [
        path
        for path in (line[3:].split(" -> ")[-1] for line in status.splitlines())
        if path not in _NOT_SOURCE
        and not any(path == out or path.startswith(f"{out}/") for out in outputs)
    ]


def _dvc_outputs() -> list[str]:
    """Every output (outs, metrics, plots) of the stages in dvc.yaml, relative to the root."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [Path(out.fs_path).relative_to(ROOT).as_posix() for out in repo.index.outs]


def committed_text(path: Path) -> str | None:
    """The content of `path` (inside the repo) at HEAD, or None if it is not committed."""
    return _git("show", f"HEAD:{path.relative_to(ROOT).as_posix()}")
