"""The comparison of all models: collect per-model results, build the table, render md/HTML."""

from __future__ import annotations

import base64
import html
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import champion as chooser
from pipeline.config import ModelSpec

DIGIT_COLUMNS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class ModelResult:
    """What the train and evaluate stages wrote about one model (None where a file is missing)."""

    spec: ModelSpec
    train: Mapping | None
    metrics: Mapping | None
    per_digit: pd.DataFrame | None
    history: pd.DataFrame | None


def _read_json(path: Path) -> Mapping | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def load_results(specs: Mapping[str, ModelSpec], reports_dir: Path) -> list[ModelResult]:
    """Read every model's train.json, metrics.json, per_digit.csv and history.csv."""
    return [
        ModelResult(
            spec,
            _read_json(reports_dir / name / "train.json"),
            _read_json(reports_dir / name / "metrics.json"),
            _read_csv(reports_dir / name / "per_digit.csv"),
            _read_csv(reports_dir / name / "history.csv"),
        )
        for name, spec in specs.items()
    ]


def comparison_table(
    results: Sequence[ModelResult], baseline: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """One row per model; test-accuracy delta against `baseline` (e.g. HEAD's metrics)."""
    rows = []
    for result in results:
        spec, train, metrics = result.spec, result.train or {}, result.metrics or {}
        test_accuracy = metrics.get("test_accuracy")
        row = {
            "model": spec.name,
            "kind": spec.kind,
            "source": spec.source,
            "parameters": train.get("parameters"),
            "epochs": train.get("epochs"),
            "train_seconds": train.get("train_seconds"),
            # evaluate's figure of the saved model; train.json's is the last epoch's, the same
            # model unless a run was restored from an older evaluate
            "val_accuracy": metrics.get("val_accuracy", train.get("val_accuracy")),
            "test_accuracy": test_accuracy,
            "target": spec.target_accuracy,
            "meets_target": None
            if test_accuracy is None
            else test_accuracy >= spec.target_accuracy,
            "reported": spec.reported_accuracy,
            "worst_digit": metrics.get("worst_digit"),
            "worst_digit_accuracy": metrics.get("worst_digit_accuracy"),
            "top_confusion": metrics.get("top_confusion"),
            "status": "ok" if train and metrics else "missing results",
        }
        if baseline is not None:
            before = baseline.get(spec.name)
            row["delta_vs_head"] = (
                None if before is None or test_accuracy is None else test_accuracy - before
            )
        rows.append(row)
    return pd.DataFrame(rows)


def load_probabilities(names: Sequence[str], reports_dir: Path) -> dict[str, dict]:
    """Each model's validation and test probabilities and labels (probabilities.npz), if any."""
    found = {}
    for name in names:
        try:
            with np.load(reports_dir / name / "probabilities.npz") as stored:
                found[name] = {key: stored[key] for key in stored.files}
        except (OSError, ValueError):
            continue
    return found


def ensemble_row(
    weights: Mapping[str, int],
    table: pd.DataFrame,
    validation: Mapping[str, float | int | str],
    test: Mapping[str, float | int | str],
) -> dict:
    """The ensemble's row of the comparison table (parameters and train time of its members)."""
    members = table.set_index("model").loc[list(weights)]
    return {
        "model": chooser.ENSEMBLE,
        "kind": "ensemble",
        "source": members_text(weights),
        "parameters": pd.to_numeric(members["parameters"], errors="coerce").sum(min_count=1),
        "epochs": None,
        "train_seconds": pd.to_numeric(members["train_seconds"], errors="coerce").sum(min_count=1),
        "val_accuracy": validation["val_accuracy"],
        "test_accuracy": test["test_accuracy"],
        "target": None,
        "meets_target": None,
        "reported": None,
        "worst_digit": test["test_worst_digit"],
        "worst_digit_accuracy": test["test_worst_digit_accuracy"],
        "top_confusion": test["test_top_confusion"],
        "status": "ok",
    }


def members_text(weights: Mapping[str, int]) -> str:
    """`cnn_a×3 + cnn_b×1`: the members and how many times each was chosen."""
    return " + ".join(f"{name}×{count}" for name, count in weights.items())


def per_digit_matrix(
    results: Sequence[ModelResult], extra: Mapping[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """Test accuracy per digit, models (and `extra` rows, e.g. the ensemble) as rows, digits
    0-9 as columns."""
    tables = {r.spec.name: r.per_digit for r in results if r.per_digit is not None}
    tables.update(extra or {})
    rows = {
        name: table.set_index("digit")["accuracy"].rename(str) for name, table in tables.items()
    }
    frame = pd.DataFrame(rows).T
    return frame.reindex(columns=DIGIT_COLUMNS) if not frame.empty else frame


def champion(table: pd.DataFrame) -> str | None:
    """The row with the best validation accuracy (ties: fewer parameters), or None."""
    return chooser.choose(table)


CHAMPION_RULE = (
    "chosen on the validation split (best validation accuracy; ties: fewer parameters), "
    "so its test accuracy is an honest estimate"
)


def ensemble_summary(table: pd.DataFrame) -> str | None:
    """One sentence: the ensemble's test accuracy against the best single model's, or None."""
    rows = table.set_index("model")
    if chooser.ENSEMBLE not in rows.index:
        return None
    singles = table[table["kind"] != "ensemble"].dropna(subset=["val_accuracy"])
    if singles.empty:
        return None
    best = chooser.choose(singles)
    ensemble, single = rows.loc[chooser.ENSEMBLE], rows.loc[best]
    return (
        f"Ensemble ({ensemble['source']}, members chosen on validation): test accuracy "
        f"{100 * float(ensemble['test_accuracy']):.2f}% against "
        f"{100 * float(single['test_accuracy']):.2f}% for the best single model on "
        f"validation, {best}."
    )


def machine_description() -> str:
    """CPU model, cores, memory and OS of this machine, for the results table (no kernel build:
    the hardware is what a reader compares)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()}"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: percentages, seconds, names."""
    shown = pd.DataFrame({"model": table["model"], "kind": table["kind"]})
    shown["params"] = table["parameters"].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    shown["epochs"] = table["epochs"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    shown["train time"] = table["train_seconds"].map(lambda v: "" if pd.isna(v) else f"{v:.0f} s")
    percent = lambda v: "" if v is None or pd.isna(v) else f"{100 * float(v):.2f}%"  # noqa: E731
    shown["val acc"] = table["val_accuracy"].map(percent)
    shown["test acc"] = table["test_accuracy"].map(percent)
    _replicate_column(shown, table)
    if "delta_vs_head" in table:
        shown["Δ vs HEAD"] = table["delta_vs_head"].map(
            lambda v: "" if v is None or pd.isna(v) else f"{100 * float(v):+.2f} pp"
        )
    shown["target"] = [
        ""
        if t is None or pd.isna(t)
        else f"{100 * t:.2f}% {'✓' if m else ('✗' if m is not None and not pd.isna(m) else '')}"
        for t, m in zip(table["target"], table["meets_target"], strict=True)
    ]
    shown["worst digit"] = [
        "" if pd.isna(d) else f"{int(d)} ({100 * float(a):.1f}%)"
        for d, a in zip(table["worst_digit"], table["worst_digit_accuracy"], strict=True)
    ]
    shown["top confusion"] = table["top_confusion"].fillna("")
    shown["source (reported)"] = [
        s if r is None or pd.isna(r) else f"{s} ({100 * r:.2f}%)"
        for s, r in zip(table["source"], table["reported"], strict=True)
    ]
    shown.loc[table["status"] != "ok", "test acc"] = "missing"
    return shown


def _measured(shown: pd.DataFrame, when: str, machine: str) -> list[str]:
    """A displayed table in Markdown, headed by when and where it was measured."""
    markdown = shown.to_markdown(index=False, disable_numparse=True)
    return [f"Measured {when} on {machine}.", "", markdown]


def _verdict(table: pd.DataFrame, champion_name: str | None) -> list[str]:
    """The replicates' sentence, the champion and the ensemble's, each after a blank line."""
    lines = ["", note] if (note := replicate_note(table)) else []
    lines += ["", f"Champion: **{champion_name}**, {CHAMPION_RULE}."] if champion_name else []
    if sentence := ensemble_summary(table):
        lines += ["", sentence]
    return lines


def results_markdown(
    table: pd.DataFrame, when: str, machine: str, champion_name: str | None = None
) -> str:
    """reports/results.md, which `make results` copies into the README: the columns that
    compare models (report.md has them all), the champion and the ensemble's sentence."""
    compact = _display(table).drop(
        columns=["kind", "Δ vs HEAD", "worst digit", "top confusion"], errors="ignore"
    )
    return "\n".join([*_measured(compact, when, machine), *_verdict(table, champion_name)]) + "\n"


def markdown_report(
    table: pd.DataFrame,
    figures: Mapping[str, str],
    when: str,
    machine: str,
    champion_name: str | None,
    replicates: pd.DataFrame | None = None,
) -> str:
    """reports/report.md: the table, the champion, every seed replicate (if `replicates`) and
    the figures (relative paths)."""
    lines = ["# MNIST architecture comparison", "", *_measured(_display(table), when, machine)]
    lines += _verdict(table, champion_name)
    lines += replicates_markdown(replicates) if replicates is not None else []
    for title, path in figures.items():
        lines += ["", f"## {title}", "", f"![{title}]({path})"]
    return "\n".join(lines) + "\n"


def html_report(
    table: pd.DataFrame,
    figures: Mapping[str, bytes],
    when: str,
    machine: str,
    champion_name: str | None,
) -> str:
    """A self-contained HTML page (figures inlined) that opens offline."""
    body = [
        "<h1>MNIST architecture comparison</h1>",
        f"<p>Measured {html.escape(when)} on {html.escape(machine)}.</p>",
        _display(table).to_html(index=False, border=0, classes="results"),
    ]
    if champion_name:
        body.append(
            f"<p>Champion: <b>{html.escape(champion_name)}</b>, {html.escape(CHAMPION_RULE)}.</p>"
        )
    if sentence := ensemble_summary(table):
        body.append(f"<p>{html.escape(sentence)}</p>")
    if note := replicate_note(table):
        body.append(f"<p>{html.escape(note)}</p>")
    for title, png in figures.items():
        data = base64.b64encode(png).decode()
        body += [
            f"<h2>{html.escape(title)}</h2>",
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">',
        ]
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "table.results{border-collapse:collapse}"
        "table.results td,table.results th{padding:4px 8px;border-bottom:1px solid #ddd}"
        "img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>MNIST comparison</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


# ---------------------------------------------------------------------------- seed replicates

REPLICATE_COLUMN = "test mean ± std"


def load_replicates(names: Mapping[str, Sequence[str]], reports_dir: Path) -> pd.DataFrame:
    """One row per training of each model: `names` maps a model to its trainings' names in
    replicate order (replicate 0, the model itself, first). NaN where a file is missing."""
    rows = []
    for model, trainings in names.items():
        for replicate, name in enumerate(trainings):
            train = _read_json(reports_dir / name / "train.json") or {}
            metrics = _read_json(reports_dir / name / "metrics.json") or {}
            rows.append(
                {
                    "model": model,
                    "replicate": replicate,
                    "name": name,
                    "parameters": train.get("parameters"),
                    "train_seconds": train.get("train_seconds"),
                    "val_accuracy": metrics.get("val_accuracy"),
                    "test_accuracy": metrics.get("test_accuracy"),
                }
            )
    columns = ["model", "replicate", "name", "parameters", "train_seconds"]
    frame = pd.DataFrame(rows, columns=[*columns, "val_accuracy", "test_accuracy"])
    for column in ("parameters", "train_seconds", "val_accuracy", "test_accuracy"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def replicate_spread(replicates: pd.DataFrame) -> pd.DataFrame:
    """Per model, over its replicates with a test accuracy: their count, and the mean and sample
    standard deviation (ddof=1, NaN for a single one) of validation and test accuracy."""
    scored = replicates.dropna(subset=["test_accuracy"])
    grouped = scored.groupby("model", sort=False)
    return pd.DataFrame(
        {
            "replicates": grouped["test_accuracy"].count(),
            "val_mean": grouped["val_accuracy"].mean(),
            "val_std": grouped["val_accuracy"].std(ddof=1),
            "test_mean": grouped["test_accuracy"].mean(),
            "test_std": grouped["test_accuracy"].std(ddof=1),
        }
    ).reset_index()


def with_replicates(table: pd.DataFrame, spread: pd.DataFrame) -> pd.DataFrame:
    """`table` with each model's spread beside it, and its target checked on the mean test
    accuracy over replicates (one lucky or unlucky seed decides nothing)."""
    merged = table.merge(spread, on="model", how="left")
    checked = merged["test_mean"].notna() & merged["target"].notna()
    meets = merged["test_mean"] >= pd.to_numeric(merged["target"], errors="coerce")
    merged["meets_target"] = merged["meets_target"].astype(object)
    merged.loc[checked, "meets_target"] = meets[checked]
    return merged


def member_rows(replicates: pd.DataFrame) -> pd.DataFrame:
    """Every training as a row named as the ensemble names its members (for ensemble_row)."""
    return replicates[["name", "parameters", "train_seconds"]].rename(columns={"name": "model"})


def replicate_summary(table: pd.DataFrame) -> dict[str, dict]:
    """summary.json's `replicates`: per model, the count, means, standard deviations, and the
    target checked on the mean."""

    def number(value: object) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return {
        row.model: {
            "replicates": int(row.replicates),
            "val_accuracy_mean": number(row.val_mean),
            "val_accuracy_std": number(row.val_std),
            "test_accuracy_mean": number(row.test_mean),
            "test_accuracy_std": number(row.test_std),
            "meets_target_on_mean": None if pd.isna(row.meets_target) else bool(row.meets_target),
        }
        for row in table.itertuples()
        if "replicates" in table and not pd.isna(row.replicates)
    }


def _spread_text(count: object, mean: object, std: object) -> str:
    """`98.42% ± 0.06 pp (n=3)`: a model's test accuracy over its replicates."""
    if count is None or pd.isna(count) or mean is None or pd.isna(mean):
        return ""
    spread = "" if std is None or pd.isna(std) else f" ± {100 * float(std):.2f} pp"
    return f"{100 * float(mean):.2f}%{spread} (n={int(count)})"


def _replicate_column(shown: pd.DataFrame, table: pd.DataFrame) -> None:
    """Adds the mean ± std column to a displayed table whose models have replicates."""
    if "test_mean" in table:
        shown[REPLICATE_COLUMN] = [
            _spread_text(n, m, s)
            for n, m, s in zip(
                table["replicates"], table["test_mean"], table["test_std"], strict=True
            )
        ]


def replicate_note(table: pd.DataFrame) -> str | None:
    """The sentence under a table with replicates: what the columns and the target mean."""
    if "replicates" not in table or table["replicates"].isna().all():
        return None
    trained = int(table["replicates"].max())
    return (
        f"Seed replicates: each model trained {trained} times with seeds derived from (seed, k) "
        f'(`replicates` in params.yaml); "{REPLICATE_COLUMN}" is the mean and sample standard '
        "deviation of their test accuracy, each target is checked on that mean, and the other "
        "columns are replicate 0's, the model's own training."
    )


def replicates_markdown(replicates: pd.DataFrame) -> list[str]:
    """report.md's section listing every training of every model."""
    percent = lambda v: "" if pd.isna(v) else f"{100 * float(v):.2f}%"  # noqa: E731
    shown = pd.DataFrame(
        {
            "model": replicates["model"],
            "replicate": replicates["replicate"].astype(str),
            "run name": replicates["name"],
            "train time": replicates["train_seconds"].map(
                lambda v: "" if pd.isna(v) else f"{v:.0f} s"
            ),
            "val acc": replicates["val_accuracy"].map(percent),
            "test acc": replicates["test_accuracy"].map(percent),
        }
    )
    markdown = shown.to_markdown(index=False, disable_numparse=True)
    return ["", "## Seed replicates", "", markdown]
