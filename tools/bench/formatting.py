"""The report as plain text: a header, then one titled, aligned table per section."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tabulate import tabulate

from tools.bench.measure import alternating_order
from tools.bench.sections import TITLES

# Above this many CPUs' worth of other work during a section, its wall times are noisy.
CONTENTION_WARNING_CPUS = 0.25


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned, a rule below."""
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {list(row)} has {len(row)} cells, expected {len(headers)}")
    return tabulate(
        [[str(cell) for cell in row] for row in rows],
        headers=[str(cell) for cell in headers],
        tablefmt="simple",
        colalign=("left", *["right"] * (len(headers) - 1)),
        disable_numparse=True,  # the cells are already formatted
    )


def alternation_text(sides: Sequence[str]) -> str:
    """How the sides were ordered, e.g. `a,b,b,a,...`."""
    return ",".join(alternating_order(sides, 2)) + ",..."


def _s(value: float) -> str:
    return f"{value:.2f}"


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


def format_tracking(result: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            "a  plain model.fit",
            _s(result["plain_wall_s"]["median"]),
            _s(result["plain_cpu_s"]["median"]),
        ],
        [
            "b  training.fit + callbacks + MLflow EpochLogger",
            _s(result["pipeline_wall_s"]["median"]),
            _s(result["pipeline_cpu_s"]["median"]),
        ],
        [
            "ratio b/a (median of the per-repeat ratios)",
            f"{result['ratio_wall_s']:.3f}",
            f"{result['ratio_cpu_s']:.3f}",
        ],
        [f"goal b/a <= {result['goal_ratio']}", result["verdict_wall_s"], result["verdict_cpu_s"]],
    ]
    fixed = [[step, _s(figures["median"])] for step, figures in result["fixed_cost_s"].items()]
    return [
        f"{result['model']}, stratified subset of {result['train_images']:,} training and "
        f"{result['val_images']:,} validation images, {result['epochs']} epochs, batch "
        f"{result['batch_size']}; median of {result['repeats']} repeats in order "
        f"{alternation_text(['a', 'b'])}",
        format_table(["side", "wall s", "CPU s"], rows),
        "",
        f"Per-epoch bookkeeping alone (training.fit's callbacks with the MLflow EpochLogger, "
        f"called directly; median of {result['bookkeeping_epochs']} epochs)",
        format_table(
            ["", "wall", "CPU"],
            [
                [
                    "seconds per epoch",
                    f"{result['bookkeeping_wall_s']['median']:.3f}",
                    f"{result['bookkeeping_cpu_s']['median']:.3f}",
                ],
                [
                    "ratio (plain epoch + bookkeeping) / plain epoch",
                    f"{result['bookkeeping_ratio_wall_s']:.3f}",
                    f"{result['bookkeeping_ratio_cpu_s']:.3f}",
                ],
            ],
        ),
        "",
        f"Fixed cost of tracking per run, outside the epoch loop (median of "
        f"{result['fixed_cost_repeats']}; store schema created beforehand)",
        format_table(["step", "seconds"], fixed),
    ]


def format_epochs(result: Mapping[str, Any]) -> list[str]:
    full = result["full_train_images"]
    rows = [
        [
            m["name"],
            m["kind"],
            m["batch_size"],
            f"{m['parameters']:,}",
            f"{m['subset_images']:,}",
            _s(m["epoch_s_subset"]["median"]),
            _s(m["epoch_s_full"]),
            f"{m['images_per_s']:,.0f}",
        ]
        for m in result["models"]
    ]
    return [
        f"Training pass only (no validation), each model's own batch size; median of "
        f"{result['repeats']} epochs after warm-up. Seconds per {full:,}-image epoch are "
        "EXTRAPOLATED from the subset timed (sized to the section's time budget).",
        format_table(
            [
                "model",
                "kind",
                "batch",
                "parameters",
                "subset",
                "s/epoch subset",
                f"s/epoch {full:,} (extrap.)",
                "images/s",
            ],
            rows,
        ),
    ]


def format_dvc(result: Mapping[str, Any]) -> list[str]:
    first = f"first dvc repro, {result['first_run_stages']} stages (once)"
    rows = [[first, _s(result["first_run_s"]), "", ""]]
    for side, label in (
        ("repro", "dvc repro (no-op)"),
        ("status", "dvc status"),
        ("version", "dvc --version (start-up floor)"),
    ):
        figures = result[f"{side}_s"]
        rows.append([label, _s(figures["median"]), _s(figures["min"]), _s(figures["max"])])
    rows.append(
        [
            "no-op repro / dvc --version (median of ratios)",
            f"{result['repro_over_version']:.2f}",
            "",
            "",
        ]
    )
    rows.append([f"goal no-op repro <= {result['goal_s']} s", result["verdict"], "", ""])
    lines = [
        f"In a temporary copy of the repo ({result['params']}); median of {result['repeats']} "
        f"runs in order {alternation_text(['repro', 'status', 'version'])}",
        format_table(["command", "median s", "min s", "max s"], rows),
    ]
    if result["noop_stages_run"]:
        lines.append(f"WARNING: not a no-op, stages ran: {', '.join(result['noop_stages_run'])}")
    return lines


def format_full(result: Mapping[str, Any]) -> list[str]:
    rows = [
        ["dvc repro download (not timed)", _s(result["download_s"])],
        [f"dvc repro, {result['stages_run']} stages (one run)", _s(result["wall_s"])],
        ["peak summed RSS of the process tree (sampled)", _gib(result["peak_rss_sum_bytes"])],
        ["largest single process (getrusage max RSS)", _gib(result["max_rss_process_bytes"])],
        [f"goal peak < {_gib(result['goal_bytes'])}", result["verdict"]],
    ]
    lines = [
        f"With {result['params']}, in a clean temporary copy with the data downloaded; RSS "
        "sampled every "
        f"{result['sample_interval_s']} s ({result['samples']} samples)",
        format_table(["figure", "value"], rows),
    ]
    if result["results_table"] is None:
        lines.append("WARNING: the run's report stage wrote no reports/results.md")
    else:
        lines += ["", "This run's reports/results.md (the report stage):", result["results_table"]]
    return lines


def format_input(result: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            label,
            _s(result[f"{side}_wall_s"]["median"]),
            _s(result[f"{side}_cpu_s"]["median"]),
            result[f"{side}_verdict"],
        ]
        for side, label in (
            ("raw", f"data.load_raw + data.normalize ({result['normalize']}) from data/raw"),
            ("processed", "data.load_dataset(data/processed/dataset.npz)"),
        )
    ]
    return [
        f"Whole data set, warm page cache; median of {result['repeats']} runs in order "
        f"{alternation_text(['raw', 'processed'])}",
        format_table(["load", "wall s", "CPU s", f"goal < {result['goal_s']} s"], rows),
    ]


def format_cpu(result: Mapping[str, Any]) -> list[str]:
    rows = [
        [
            v["name"],
            v["where"],
            v["settings"]["batch_size"],
            _s(v["epoch_s"]["median"]),
            len(v["epoch_s"]["runs"]),
            f"{v['ratio']:.2f}",
            f"{v['val_accuracy']:.4f}",
            f"{v['accuracy_delta']:+.4f}",
            "yes" if v["same_accuracy"] else "no",
            "yes" if v["replay_exact"] else "no",
        ]
        for v in result["variants"]
    ]
    headers = [
        "variant",
        "where",
        "batch",
        "s/epoch",
        "runs",
        "ratio",
        "val acc",
        "delta acc",
        "same acc",
        "exact replay",
    ]
    return [
        f"{result['model']}, one epoch over a stratified subset of {result['train_images']:,} "
        f"training images, median of {result['repeats']} repeats (all variants interleaved, "
        "order reversed on alternate repeats). Every repeat replays the same epoch from the "
        f"same weights and seeds; accuracy on the {result['val_images']:,} validation images "
        "after it. Ratio and delta are against the default of the same group (in-process or "
        f"subprocess). A variant {result['settled_ratio']}x or more slower than that default "
        "after its first epoch is not repeated (runs 1).",
        format_table(headers, rows),
        f"same acc: |delta| <= {result['accuracy_tolerance']:.4f} (two standard errors of the "
        "default's accuracy). After ONE epoch a larger batch means fewer steps, so its accuracy "
        "says little about the accuracy after full training.",
        f"Lowest ratio with the same accuracy: {result['fastest_same_accuracy']} "
        "(the bench only reports; params.yaml is unchanged)",
    ]


FORMATTERS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "tracking": format_tracking,
    "epochs": format_epochs,
    "dvc": format_dvc,
    "full": format_full,
    "input": format_input,
    "cpu": format_cpu,
}


def format_report(report: Mapping[str, Any]) -> str:
    """The whole report as plain text: a header, then one titled block per section."""
    machine = report["machine"]
    cpus = machine["cpus"]
    lines = [
        f"tools.bench on {cpus} CPUs ({machine['processor']}); took {report['seconds']:.0f} s; "
        f"load average {machine['load_start'][0]:.2f} at start; other processes kept "
        f"{report['other_cpus']:.2f} of the {cpus} CPUs busy on average",
    ]
    if report.get("runtime"):
        lines.append("runtime: " + ", ".join(f"{k} {v}" for k, v in report["runtime"].items()))
    for name, result in report["sections"].items():
        lines += [
            "",
            f"{TITLES[name]} (took {result['seconds']:.0f} s, budget {result['budget_s']} s; "
            f"other processes: {result['other_cpus']:.2f} CPUs)",
            *FORMATTERS[name](result),
        ]
        if result["other_cpus"] > CONTENTION_WARNING_CPUS:
            lines.append(
                f"WARNING: other processes kept {result['other_cpus']:.2f} of {cpus} CPUs busy "
                "during this section: its wall times are noisy (CPU times much less so); "
                "rerun on an idle machine before judging a goal on them."
            )
    return "\n".join(lines)
