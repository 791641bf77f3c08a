"""Shared fixtures: the repository root, the MNIST mirror, a runnable copy of the repo."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

# The benchmark's tiny pipeline and repo copy serve the end-to-end tests too.
from pipeline.bench.repo import TINY_MODELS, command_env, copy_repository

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def mnist_mirror() -> Path | None:
    """$MNIST_MIRROR if it is a folder, else ../shared/data/mnist beside the repo, else None."""
    candidates = [os.environ.get("MNIST_MIRROR", ""), REPO_ROOT.parent / "shared/data/mnist"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").is_file():
            return Path(candidate).resolve()
    return None


def pipeline_env(**extra: str) -> dict[str, str]:
    """The environment of a stage or dvc command (the benchmark's), plus `extra`."""
    return {**command_env(mnist_mirror()), **extra}


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output if it fails and `check` is set."""
    done = subprocess.run(
        args, cwd=cwd, env=env or pipeline_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def copy_repo(destination: Path) -> Path:
    """Copy the repository's tracked and new (not ignored) files into a fresh git repo."""
    return copy_repository(destination, REPO_ROOT)


def write_small_params(
    repo: Path, train_limit: int = 3000, epochs: int = 1, **sections: dict
) -> dict:
    """Shrink the copy's params.yaml to a quick run: few images, one epoch, tiny models."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["preprocess"]["train_limit"] = train_limit
    params["train"]["epochs"] = epochs
    params["models"] = TINY_MODELS
    for key, value in sections.items():
        params[key].update(value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local MNIST copy, or skip: it cannot be downloaded here."""
    found = mnist_mirror()
    if found is None:
        pytest.skip("no MNIST copy: set MNIST_MIRROR to a folder with the four IDX .gz files")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def mlflow_server(folder: Path, deadline_seconds: float = 120) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (SQLite backend, proxied artifacts); yields its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(VENV_BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # MLflow 3's job runner starts 7 extra worker processes; the tests need none.
        env=pipeline_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
    )
    try:
        deadline = time.monotonic() + deadline_seconds
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited {process.returncode}: "
                    f"{(folder / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server on {uri} not healthy after {deadline_seconds} s")
            time.sleep(0.25)  # polling interval, not synchronisation: /health decides
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()
