"""Section 3: DVC start-up, a no-op `dvc repro` against `dvc status` and `dvc --version`."""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support import (
    command_env,
    copy_repository,
    mnist_mirror,
    run,
    stages_run,
    write_small_params,
)
from tools.bench.measure import (
    alternating_order,
    interleave,
    paired_ratio,
    summary,
    timed,
    verdict,
)

log = logging.getLogger("tools.bench")

DVC_REPEATS = 5
DVC_GOAL_SECONDS = 1.5
TINY_TRAIN_LIMIT = 600
TINY_EPOCHS = 1


def dvc_startup(repeats: int = DVC_REPEATS) -> dict[str, Any]:
    """No-op `dvc repro` against `dvc status` and `dvc --version` in a copy of the repo.

    The copy keeps every model, so the no-op checks the real stage graph (all train and
    evaluate instances); only the data and epochs are shrunk and the MLflow model logging is
    off, to make the first run quick.
    """
    mirror = mnist_mirror()
    env = command_env(mirror)
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="bench-dvc-") as tmp:
        repo = copy_repository(Path(tmp) / "repo")
        write_small_params(
            repo, TINY_TRAIN_LIMIT, TINY_EPOCHS, models=None, tracking={"log_model": False}
        )
        run(["git", "commit", "-qam", "quick params"], repo, env)

        def command(*args: str) -> Callable[[], dict[str, Any]]:
            def measure() -> dict[str, Any]:
                with timed() as figures:
                    done = run([dvc, *args], repo, env, timeout=None)
                return {"wall_s": figures["wall_s"], "stages_run": stages_run(done.stdout)}

            return measure

        log.info("  every model on a small subset, first dvc repro (not a no-op)")
        first = command("repro")()

        runs = interleave(
            {
                "repro": command("repro"),
                "status": command("status"),
                "version": command("--version"),
            },
            repeats,
        )
    return dvc_result(runs, first["wall_s"], len(first["stages_run"]))


def dvc_result(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], first_run_s: float, first_run_stages: int
) -> dict[str, Any]:
    """Medians of each command, the goal verdict and the no-op repro / `dvc --version` ratio."""
    repeats = len(runs["repro"])
    result: dict[str, Any] = {
        "params": (
            f"train_limit {TINY_TRAIN_LIMIT}, epochs {TINY_EPOCHS}, every model, "
            "tracking.log_model false"
        ),
        "repeats": repeats,
        "order": alternating_order(list(runs), repeats),
        "first_run_s": first_run_s,
        "first_run_stages": first_run_stages,
        "noop_stages_run": sorted({stage for run in runs["repro"] for stage in run["stages_run"]}),
        "goal_s": DVC_GOAL_SECONDS,
    }
    for side in runs:
        result[f"{side}_s"] = summary(runs[side], "wall_s")
    result["verdict"] = verdict(result["repro_s"]["median"], DVC_GOAL_SECONDS)
    result["repro_over_version"] = paired_ratio(
        result["repro_s"]["runs"], result["version_s"]["runs"]
    )
    return result
