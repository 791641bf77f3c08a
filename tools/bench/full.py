"""Section 4 (--full only): wall time and peak memory of a whole `dvc repro` from a clean copy."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import paths
from tests.support import command_env, copy_repository, mnist_mirror, run, stages_run
from tools.bench.measure import BenchError, timed, verdict

log = logging.getLogger("tools.bench")

MEMORY_GOAL_BYTES = 4 * 2**30
SAMPLE_SECONDS = 0.5


def full_pipeline() -> dict[str, Any]:
    """Wall time and peak memory of the whole `dvc repro` from a clean copy with the real params,
    data downloaded, and the results table that run's report stage wrote (None if it wrote none).
    """
    mirror = mnist_mirror()
    env = command_env(mirror)
    dvc = str(Path(sys.executable).parent / "dvc")
    with tempfile.TemporaryDirectory(prefix="bench-full-") as tmp:
        repo = copy_repository(Path(tmp) / "repo")
        log.info("  dvc repro download (not timed)")
        with timed() as download:
            run([dvc, "repro", "download"], repo, env, timeout=None)
        log.info("  dvc repro (timed; output in %s)", Path(tmp) / "repro.log")
        result = sampled_run([dvc, "repro"], repo, env, Path(tmp) / "repro.log")
        stages = stages_run((Path(tmp) / "repro.log").read_text())
        results = repo / paths.RESULTS.relative_to(paths.ROOT)
        table = results.read_text() if results.is_file() else None
    params_used = "the repository's params.yaml"
    return full_result(download["wall_s"], len(stages), result, params_used, table)


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
