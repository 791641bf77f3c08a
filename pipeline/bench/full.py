"""Section 4 (--full only): wall time and peak memory of a whole `dvc repro` from a clean copy."""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.bench.measure import verdict
from pipeline.bench.repo import (
    command_env,
    copy_repository,
    mnist_mirror,
    run_command,
    sampled_run,
    stages_run,
)

log = logging.getLogger("pipeline.bench")

MEMORY_GOAL_BYTES = 4 * 2**30


def full_pipeline(edit_params: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Wall time and peak memory of the whole `dvc repro` from a clean copy, data downloaded,
    and the results table that run's report stage wrote (None if it wrote none).

    `edit_params` may change the copy's params.yaml first (the CLI uses the real params).
    """
    mirror = mnist_mirror()
    env = command_env(mirror)
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="bench-full-") as tmp:
        repo = copy_repository(Path(tmp) / "repo")
        if edit_params is not None:
            edit_params(repo / "params.yaml")
            run_command(["git", "commit", "-qam", "bench params"], repo, env)
        log.info("  dvc repro download (not timed)")
        download = run_command([dvc, "repro", "download"], repo, env)
        log.info("  dvc repro (timed; output in %s)", Path(tmp) / "repro.log")
        result = sampled_run([dvc, "repro"], repo, env, Path(tmp) / "repro.log")
        stages = stages_run((Path(tmp) / "repro.log").read_text())
        results = repo / paths.RESULTS.relative_to(paths.ROOT)
        table = results.read_text() if results.is_file() else None
    params_used = "the repository's params.yaml" if edit_params is None else "edited params"
    return full_result(download["wall_s"], len(stages), result, params_used, table)


def full_result(
    download_s: float,
    stages: int,
    sampled: Mapping[str, Any],
    params_used: str,
    results_table: str | None,
) -> dict[str, Any]:
    """The timed run's figures, the verdict of its peak memory against the goal, and the
    report stage's results table from the same run."""
    peak = max(sampled["peak_rss_sum_bytes"], sampled["max_rss_process_bytes"])
    return {
        "params": params_used,
        "download_s": download_s,
        "stages_run": stages,
        **sampled,
        "goal_bytes": MEMORY_GOAL_BYTES,
        "verdict": verdict(peak, MEMORY_GOAL_BYTES),
        "results_table": results_table,
    }
