"""Running the pipeline in a temporary copy of the repository: environment, commands, params."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline import paths
from pipeline.bench.measure import BenchError
from pipeline.errors import DataError

TINY_TRAIN_LIMIT = 600
TINY_EPOCHS = 1
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

SAMPLE_SECONDS = 0.5


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


def command_env(mirror: Path | None = None) -> dict[str, str]:
    """What a dvc command gets: this venv first on PATH, no outer DVC/MLflow, the local mirror."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "MLFLOW_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(key, "bench")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(key, "bench@localhost")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if mirror is not None:
        env["MNIST_MIRROR"] = str(mirror)
    return env


def run_command(args: Sequence[str], cwd: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """Run a command; its wall seconds and output, or a BenchError naming its last error line."""
    start = time.perf_counter()
    done = subprocess.run(list(args), cwd=cwd, env=dict(env), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise BenchError(f"`{' '.join(args)}` in {cwd} exited {done.returncode}: {lines[-1]}")
    return {"wall_s": seconds, "stdout": done.stdout}


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` output says it ran."""
    prefix = "Running stage '"
    return [line.split("'")[1] for line in output.splitlines() if line.startswith(prefix)]


def copy_repository(destination: Path, source: Path | None = None) -> Path:
    """Copy the repo's tracked and new (not ignored) files, minus pipeline outputs, into a fresh
    git repository with one commit."""
    source = source or paths.ROOT
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
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
        ["git", "commit", "-qm", "copy of the repository for pipeline.bench"],
    ):
        run_command(args, destination, env)
    return destination


def shrink_params(
    path: Path, models: Mapping[str, Any] | None = TINY_MODELS, log_model: bool = True
) -> None:
    """A quick pipeline: a small training subset and one epoch, for `models` (one tiny MLP and
    one tiny CNN by default) or, with `models=None`, for every model of the file; `log_model`
    False also skips saving each model into MLflow (~2 s per train stage here)."""
    params = yaml.safe_load(path.read_text())
    params["preprocess"]["train_limit"] = TINY_TRAIN_LIMIT
    params["train"]["epochs"] = TINY_EPOCHS
    if not log_model:
        params["tracking"]["log_model"] = False
    if models is not None:
        params["models"] = models
    for spec in (spec for kind in params["models"].values() for spec in kind.values()):
        if "epochs" in spec.get("train", {}):
            spec["train"]["epochs"] = TINY_EPOCHS
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def sampled_run(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path
) -> dict[str, Any]:
    """Run a command, sampling the summed RSS of its process tree every SAMPLE_SECONDS."""
    import psutil

    peak_sum = peak_one = samples = 0
    start = time.perf_counter()
    with (
        open(log_path, "w") as output,
        subprocess.Popen(
            list(args), cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        while True:
            # wait4 reports the peak RSS of the process and every descendant it waited for.
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = []
            with contextlib.suppress(psutil.Error):  # the tree changes while it is read
                root = psutil.Process(process.pid)
                for member in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        rss.append(member.memory_info().rss)
            samples += 1
            peak_sum, peak_one = max(peak_sum, sum(rss)), max(peak_one, max(rss, default=0))
            time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        lines = log_path.read_text().strip().splitlines() or ["(no output)"]
        raise BenchError(f"`{' '.join(args)}` exited {process.returncode}: {lines[-1]}")
    return {
        "wall_s": seconds,
        "samples": samples,
        "sample_interval_s": SAMPLE_SECONDS,
        "peak_rss_sum_bytes": peak_sum,
        "peak_rss_sampled_process_bytes": peak_one,
        "max_rss_process_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
    }
