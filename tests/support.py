"""What the tests and our tools share: the MNIST mirror, a runnable copy of the repository with
small params, the environment and output of its commands, an `mlflow server` on a free port.

No pytest here: the benchmark (tools/bench) runs the pipeline in a copy of the repository too.
Faults are PipelineErrors, which fail a test and end a tool with one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from pipeline import paths
from pipeline.errors import DataError, PipelineError

REPO_ROOT = paths.ROOT
VENV_BIN = Path(sys.executable).parent
SERVER_START_SECONDS = 120
POLL_SECONDS = 0.25

# One tiny MLP and one tiny CNN: the quick pipeline of the end-to-end tests and the benchmark.
TINY_MODELS = {
    "mlp": {
        "tiny_mlp": {
            "source": "E",
            "reported_accuracy": 0.975,
            "target_accuracy": 0.5,
            "hidden": [32],
            "dropout": 0.0,
        }
    },
    "cnn": {
        "tiny_cnn": {
            "source": "A",
            "reported_accuracy": 0.9875,
            "target_accuracy": 0.5,
            "dropout": 0.25,
            # augmented like our own model, so the end-to-end tests train through RandomAffine
            "augment": {"rotation": 0.03, "shift": 0.1, "zoom": 0.1},
            "layers": [{"conv": 8, "kernel": 3}, {"pool": 2}, "flatten", "dropout"],
        }
    },
}


class CommandError(PipelineError):
    """A command exited non-zero; its whole output is in a note (shown by pytest)."""


# ---------------------------------------------------------------- the MNIST mirror, commands


def mnist_mirror() -> Path:
    """$MNIST_MIRROR, else ../shared/data/mnist beside the repository; a DataError if neither."""
    candidates = [
        os.environ.get("MNIST_MIRROR", "").strip(),
        paths.ROOT.parent / "shared/data/mnist",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train-images-idx3-ubyte.gz").is_file():
            return Path(candidate).resolve()
    raise DataError(
        "no local MNIST copy: set MNIST_MIRROR to a folder with the four MNIST .gz files "
        f"(or put them in {paths.ROOT.parent / 'shared/data/mnist'})"
    )


def command_env(mirror: Path | None = None, **extra: str) -> dict[str, str]:
    """What a stage or dvc command gets: this venv first on PATH, no outer DVC/MLflow settings,
    a git identity, `mirror` as MNIST_MIRROR; then `extra`. (The stages quiet TensorFlow.)"""
    # No outer DVC/MLflow settings, and TensorFlow's log level as a user has it (unset), not one
    # an earlier test of this process set.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DVC_", "MLFLOW_")) and k != "TF_CPP_MIN_LOG_LEVEL"
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "pipeline")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, "pipeline@localhost")
    if mirror is not None:
        env["MNIST_MIRROR"] = str(mirror)
    return {**env, **extra}


def pipeline_env(**extra: str) -> dict[str, str]:
    """command_env with the MNIST mirror if there is one, plus `extra`."""
    try:
        mirror = mnist_mirror()
    except DataError:
        mirror = None
    return command_env(mirror, **extra)


def run(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 900,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command; with `check`, a CommandError naming its last output line if it fails."""
    done = subprocess.run(
        list(args),
        cwd=cwd,
        env=dict(env) if env is not None else pipeline_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        error = CommandError(f"`{' '.join(args)}` in {cwd} exited {done.returncode}: {lines[-1]}")
        error.add_note(f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        raise error
    return done


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` output says it ran, in order."""
    prefix = "Running stage '"
    return [line.split("'")[1] for line in output.splitlines() if line.startswith(prefix)]


# ---------------------------------------------------------------- a copy of the repository


def copy_repository(destination: Path, source: Path | None = None) -> Path:
    """Copy the repo's tracked and new (not ignored) files, minus pipeline outputs, into a fresh
    git repository with one commit."""
    source = source or paths.ROOT
    listed = run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], source
    ).stdout.split("\0")
    for name in filter(None, listed):
        # dvc.lock and reports/ record the source's own runs; the copy makes its own.
        if name.startswith(("reports/", "dvc.lock")) or not (source / name).is_file():
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target)
    env = command_env()
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "copy of the repository"],
    ):
        run(args, destination, env)
    return destination


def _rewrite_params(repo: Path, change: Callable[[dict[str, Any]], None]) -> bytes:
    """Apply `change` to the repo's params.yaml; return its old bytes."""
    path = repo / "params.yaml"
    old = path.read_bytes()
    params = yaml.safe_load(old)
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return old


def edit_params(repo: Path, **changes: object) -> bytes:
    """Set dotted keys in the repo's params.yaml; return the old bytes to restore them."""

    def change(params: dict[str, Any]) -> None:
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node = params
            for key in parents:
                node = node[key]
            node[last] = value

    return _rewrite_params(repo, change)


def write_small_params(
    repo: Path,
    train_limit: int = 3000,
    epochs: int = 1,
    models: Mapping[str, Any] | None = TINY_MODELS,
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    """Shrink the repo's params.yaml to a quick run: `train_limit` images, `epochs` epochs (also
    for models with their own), `models` (None keeps every model), `sections` merged into their
    sections (e.g. tracking={"log_model": False}). Returns the new params."""
    written: dict[str, Any] = {}

    def change(params: dict[str, Any]) -> None:
        params["preprocess"]["train_limit"] = train_limit
        params["train"]["epochs"] = epochs
        if models is not None:
            params["models"] = dict(models)
        for spec in (spec for kind in params["models"].values() for spec in kind.values()):
            if "epochs" in spec.get("train", {}):
                spec["train"]["epochs"] = epochs
        for key, value in sections.items():
            params[key].update(value)
        written.update(params)

    _rewrite_params(repo, change)
    return written


def store_uri(repo: Path) -> str:
    """The URI of the embedded tracking store of `repo` (a copy of this repository)."""
    return f"sqlite:///{repo / paths.MLFLOW_DB.relative_to(paths.ROOT)}"


# ---------------------------------------------------------------- an MLflow server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def last_line(log_path: Path) -> str:
    """The last line of a log file, or `(no output)`."""
    lines = log_path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def wait_until_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    seconds: float,
    health: str = "/health",
) -> None:
    """Poll GET `url` + `health` until it answers 200; a PipelineError naming the log's last
    line if the server exits or is not healthy within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}{health}", timeout=2).status_code == 200:
                return
        time.sleep(POLL_SECONDS)  # a polling interval, not synchronisation: /health decides
    state = "exited" if process.poll() is not None else f"not healthy after {seconds:.0f} s"
    raise PipelineError(f"server on {url} {state}: {last_line(log_path)}")


def stop_process_group(process: subprocess.Popen[Any]) -> None:
    """Terminate the process group of `process` and wait for it (SIGKILL if it lingers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def mlflow_server(
    folder: Path,
    store_args: Sequence[str] | None = None,
    port: int = 0,
    seconds: float = SERVER_START_SECONDS,
) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (a free port unless `port`); yields its URL.

    Its store is `store_args` (mlflow server options), by default a new SQLite file and proxied
    artifacts in `folder`, where its log goes too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    store_args = store_args or [
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    command = [
        str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", *store_args,
    ]  # fmt: skip
    # No job runner (7 more processes that only slow the start down), no UI telemetry.
    env = pipeline_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
    with background_server(command, url=f"http://127.0.0.1:{port}", log_path=folder / "server.log",
                           env=env, seconds=seconds) as url:  # fmt: skip
        yield url


@contextlib.contextmanager
def background_server(
    command: Sequence[str],
    url: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    health: str = "/health",
    seconds: float = SERVER_START_SECONDS,
) -> Iterator[str]:
    """Run a server `command` until `url` + `health` answers 200; yield `url`; stop it after."""
    with log_path.open("wb") as log:
        # Its own process group: servers run workers (uvicorn, gunicorn) as children.
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env) if env is not None else pipeline_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(url, process, log_path, seconds, health)
        yield url
    finally:
        stop_process_group(process)


def tracking_requests() -> dict[str, int]:
    """params.yaml's tracking.request_* settings (the HTTP bounds of TrackingConfig)."""
    tracking = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["tracking"]
    return {key: value for key, value in tracking.items() if key.startswith("request_")}


def start_queue(repo: Path, jobs: int, env: Mapping[str, str] | None = None) -> None:
    """`dvc queue start -j jobs` in `repo`, returning once the workers are started: they are
    detached, and would hold a captured stdout open until the queue is empty."""
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(jobs)],
        cwd=repo,
        env=dict(env) if env is not None else pipeline_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=300,
    )
