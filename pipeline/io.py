"""Atomic file writes: a crash or a full disk never leaves half a file behind."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.{os.getpid()}.", suffix=path.suffix, dir=path.parent
        )
        os.close(fd)
    except OSError as error:
        raise PipelineError(f"{path.parent}: cannot write here ({error.strerror})") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except OSError as error:
        raise PipelineError(f"{path}: write failed ({error.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    """Delete temporary files of `path` left by writers that no longer run (a SIGKILL skips
    every `finally`); their names hold the writer's process id, so a live writer's file stays."""
    prefix = f".{path.stem}."
    for stale in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = stale.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    write_bytes(path, text.encode())


def write_json(path: Path, value: Any) -> None:
    """Write `value` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp)` to produce the file, then move it to `path` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def save_figure(path: Path, figure: Any) -> None:
    """Render a matplotlib Figure to PNG at `path`, atomically."""
    write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def owned(path: Path, owner: Path) -> Path:
    """`path` resolved, if it lies strictly inside `owner` (also resolved); else one line.

    Resolving first means `..`, symlinks and absolute names cannot point outside `owner`.
    """
    target, root = Path(path).resolve(), Path(owner).resolve()
    if target == root or not target.is_relative_to(root):
        raise PipelineError(f"{path}: refusing to remove a path outside {owner}")
    return target


def remove_owned(path: Path, owner: Path) -> None:
    """Delete the folder (or file) `path`, only if it lies strictly inside `owner`."""
    target = owned(path, owner)
    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
