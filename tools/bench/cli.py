"""The command line: parse the arguments, check inputs, run the sections, print the report."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline import io, paths
from pipeline.config import Params, load_params
from pipeline.entry import exit_code
from pipeline.errors import DataError
from tests.support import mnist_mirror
from tools import bench
from tools.bench.cpu import cpu_settings, serve_variant
from tools.bench.epochs import epoch_times
from tools.bench.formatting import format_report
from tools.bench.full import full_pipeline
from tools.bench.loading import input_pipeline
from tools.bench.measure import busy_cpu_seconds, other_cpus
from tools.bench.noop import dvc_startup
from tools.bench.overhead import TRACKING_REPEATS, tracking_overhead
from tools.bench.sections import (
    BUDGET_SECONDS,
    DEFAULT_SECTIONS,
    SECTIONS,
    TENSORFLOW_SECTIONS,
    TITLES,
)

log = logging.getLogger("tools.bench")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, with `sections` the chosen sections in the order they run."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench", description=bench.__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also time the full dvc repro and its peak memory (60-80 min on 2 cores)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=TRACKING_REPEATS,
        help="repeats of the tracking-overhead comparison (default %(default)s)",
    )
    parser.add_argument("--sections", help=f"comma-separated subset of {', '.join(SECTIONS)}")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: a section-6 worker
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    chosen = args.sections.split(",") if args.sections else list(DEFAULT_SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    if "full" in chosen and not args.full:
        parser.error("the full section runs only with --full")
    if args.full:
        chosen.append("full")
    args.sections = [name for name in SECTIONS if name in chosen]
    return args


def check_inputs(sections: Sequence[str]) -> None:
    """Fail before any measurement if a section's input is missing."""
    needs = {
        "tracking": [paths.DATASET],
        "epochs": [paths.DATASET],
        "cpu": [paths.DATASET],
        "input": [paths.RAW_DIR, paths.DATASET],
    }
    for name in sections:
        for path in needs.get(name, []):
            if not path.exists():
                raise DataError(f"{path}: missing (section {name}); run `dvc repro preprocess`")
        if name in ("dvc", "full"):
            mnist_mirror()


def run_bench(params: Params, sections: Sequence[str], repeats: int) -> dict[str, Any]:
    """Run the chosen sections in order; the report of their figures."""
    from pipeline.report import machine_description

    started = time.perf_counter()
    machine_start, own_start = busy_cpu_seconds()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": machine_description(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_start": list(os.getloadavg()),
        },
        "sections": {},
    }
    runtime = None
    if TENSORFLOW_SECTIONS & set(sections):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from pipeline import runner

        runtime = runner.configure(params.runner, params.seed)  # once, before any TF op
        tags = runtime.tags()
        report["runtime"] = {
            "device": runtime.device,
            "precision": runtime.precision_policy,
            "jit_compile": runtime.jit_compile,
            "deterministic": params.runner.deterministic,
            "tensorflow": tags["tensorflow.version"],
            "keras": tags["keras.version"],
        }
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "tracking": lambda: tracking_overhead(params, runtime, repeats),
        "epochs": lambda: epoch_times(params, runtime),
        "dvc": dvc_startup,
        "full": full_pipeline,
        "input": lambda: input_pipeline(params),
        "cpu": lambda: cpu_settings(params, runtime),
    }
    for name in sections:
        log.info("%s (budget %d s)", TITLES[name], BUDGET_SECONDS[name])
        start = time.perf_counter()
        machine, own = busy_cpu_seconds()
        result = measures[name]()
        result["seconds"] = time.perf_counter() - start
        result["budget_s"] = BUDGET_SECONDS[name]
        machine_end, own_end = busy_cpu_seconds()
        result["other_cpus"] = other_cpus(machine_end - machine, own_end - own, result["seconds"])
        if result["seconds"] > BUDGET_SECONDS[name]:
            log.warning(
                "%s took %.0f s, over its budget of %d s",
                TITLES[name],
                result["seconds"],
                BUDGET_SECONDS[name],
            )
        report["sections"][name] = result
    report["machine"]["load_end"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - started
    machine_end, own_end = busy_cpu_seconds()
    report["other_cpus"] = other_cpus(
        machine_end - machine_start, own_end - own_start, report["seconds"]
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; print the tables, write the JSON; 1 with one line on an expected fault."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    def work() -> None:
        params = load_params()
        if args.variant:
            serve_variant(params, json.loads(args.variant))
            return
        check_inputs(args.sections)
        report = run_bench(params, args.sections, args.repeats)
        print(format_report(report))
        if args.json:
            io.write_json(args.json, report)

    return exit_code(work)
