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
from pipeline import metrics
from pipeline.baseline import Baseline
from pipeline.config import ModelSpec

INTERVAL_COLUMNS = (
    "val_accuracy_low",
    "val_accuracy_high",
    "test_accuracy_low",
    "test_accuracy_high",
)
PAIRED_COLUMNS = (
    "delta_vs_baseline",
    "baseline_only",
    "candidate_only",
    "p_vs_baseline",
    "verdict_vs_baseline",
    "delta_vs_champion",
    "p_vs_champion",
    "verdict_vs_champion",
)


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


def comparison_table(results: Sequence[ModelResult]) -> pd.DataFrame:
    """One row per model: size, time, both accuracies with their 95% intervals, target, source."""
    rows = []
    for result in results:
        spec, train, evaluated = result.spec, result.train or {}, result.metrics or {}
        test_accuracy = evaluated.get("test_accuracy")
        rows.append(
            {
                "model": spec.name,
                "kind": spec.kind,
                "source": spec.source,
                "parameters": train.get("parameters"),
                "epochs": train.get("epochs"),
                "train_seconds": train.get("train_seconds"),
                # evaluate's figure of the saved model; train.json's is the last epoch's, the
                # same model unless a run was restored from an older evaluate
                "val_accuracy": evaluated.get("val_accuracy", train.get("val_accuracy")),
                **{key: evaluated.get(key) for key in INTERVAL_COLUMNS},
                "test_accuracy": test_accuracy,
                "target": spec.target_accuracy,
                "meets_target": None
                if test_accuracy is None
                else test_accuracy >= spec.target_accuracy,
                "reported": spec.reported_accuracy,
                "worst_digit": evaluated.get("worst_digit"),
                "worst_digit_accuracy": evaluated.get("worst_digit_accuracy"),
                "top_confusion": evaluated.get("top_confusion"),
                "status": "ok" if train and metrics else "missing results",
            }
        )
    return pd.DataFrame(rows)


def paired_tests(
    table: pd.DataFrame,
    predictions: Mapping[str, np.ndarray],
    labels: np.ndarray | None,
    baseline: Baseline,
    champion_name: str | None,
) -> pd.DataFrame:
    """The table with each row's test Δ and McNemar test against the baseline revision (Δ alone
    where the baseline's predictions are missing) and against the champion."""
    if labels is None:
        return table.reindex(columns=[*table.columns, *PAIRED_COLUMNS])
    paired = baseline.labels is not None and np.array_equal(baseline.labels, labels)
    rows = []
    for row in table.itertuples():
        name, columns = row.model, {}
        before = baseline.predictions.get(name) if paired else None
        if name in predictions and before is not None:
            test = metrics.paired_test(labels, before, predictions[name])
            columns.update(
                delta_vs_baseline=test.delta,
                baseline_only=test.baseline_only,
                candidate_only=test.candidate_only,
                p_vs_baseline=test.p,
                verdict_vs_baseline=test.verdict,
            )
        elif name in baseline.accuracies and not pd.isna(row.test_accuracy):
            columns["delta_vs_baseline"] = float(row.test_accuracy) - baseline.accuracies[name]
        if name in predictions and champion_name in predictions:
            test = metrics.paired_test(labels, predictions[champion_name], predictions[name])
            columns.update(
                delta_vs_champion=test.delta,
                p_vs_champion=test.p,
                verdict_vs_champion=test.verdict,
            )
        rows.append(columns)
    extra = pd.DataFrame(rows, index=table.index, columns=PAIRED_COLUMNS)
    return pd.concat([table, extra], axis=1)


def test_predictions(
    stored: Mapping[str, Mapping[str, np.ndarray]], extra: Mapping[str, np.ndarray] | None = None
) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """The test labels and each model's predicted test labels (plus `extra`, e.g. the
    ensemble's), from load_probabilities' arrays."""
    labels = next(iter(stored.values()))["y_test"] if stored else None
    predictions = {name: arrays["test"].argmax(axis=1) for name, arrays in stored.items()}
    return labels, {**predictions, **(extra or {})}


def headline_metrics(table: pd.DataFrame, champion_name: str | None) -> dict:
    """reports/metrics.json, the one metrics file `dvc exp show` shows: per model its validation
    and test accuracy, its test Δ against the baseline (pp) and that Δ's p; the champion.

    Four short keys per model and no ensemble row (report.md has it, with every interval):
    after a one-model change `dvc exp show --only-changed` shows that model's four columns, and
    Δ and p of the models whose Δ differs between the rows, in 160 columns with the changed
    parameter (DVC hides parameters before metrics when the table is too wide).
    """

    def number(value: object, digits: int = 6) -> float | None:
        return None if _missing(value) else round(float(value), digits)

    def significant(value: object) -> float | None:
        return None if _missing(value) else float(f"{float(value):.3g}")

    headline: dict = {"champion": champion_name}
    for row in table[table["model"] != chooser.ENSEMBLE].itertuples():
        delta = getattr(row, "delta_vs_baseline", None)
        headline[row.model] = {
            "val": number(row.val_accuracy),
            "test": number(row.test_accuracy),
            "Δ": None if _missing(delta) else number(100 * float(delta), 4),  # in pp
            "p": significant(getattr(row, "p_vs_baseline", None)),
        }
    return headline


def baseline_notes(
    baseline: Baseline, labels: np.ndarray | None, names: Sequence[str]
) -> list[str]:
    """What the Δ columns compare against, and one line where a test could not be made."""
    if baseline.rev is None:
        return ["No baseline revision (no git commit): no Δ."]
    rev = baseline.rev[:12]
    notes = [
        f"Δ: test accuracy against the baseline {rev} (the revision this run started from), "
        "on the same test images; b: images only the baseline gets right, c: only this model; "
        f"p: McNemar's exact test; verdict at p < {metrics.ALPHA}."
    ]
    if baseline.labels is not None and (
        labels is None or not np.array_equal(baseline.labels, labels)
    ):
        notes.append(f"The baseline {rev} has other test images: Δ without a test.")
    elif baseline.missing:
        notes.append(
            f"The baseline {rev}'s predictions of {', '.join(baseline.missing)} are in neither "
            "the DVC cache nor a remote: Δ without a test."
        )
    new = [name for name in names if name not in baseline.accuracies]
    if new:
        notes.append(f"New since the baseline {rev} (no Δ): {', '.join(new)}.")
    return notes


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
        "val_accuracy_low": validation["val_accuracy_low"],
        "val_accuracy_high": validation["val_accuracy_high"],
        "test_accuracy_low": test["test_accuracy_low"],
        "test_accuracy_high": test["test_accuracy_high"],
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
    return frame.reindex(columns=sorted(frame.columns, key=int)) if not frame.empty else frame


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


def _missing(value: object) -> bool:
    return value is None or pd.isna(value)


def _percent(value: object) -> str:
    return "" if _missing(value) else f"{100 * float(value):.2f}%"


def _with_interval(value: object, low: object, high: object) -> str:
    """`99.40% (99.24–99.52)`: an accuracy and its 95% interval, in percent."""
    if _missing(value):
        return ""
    if _missing(low) or _missing(high):
        return _percent(value)
    return f"{_percent(value)} ({100 * float(low):.2f}–{100 * float(high):.2f})"


def _points(value: object) -> str:
    return "" if _missing(value) else f"{100 * float(value):+.2f} pp"


def _p_value(value: object) -> str:
    return "" if _missing(value) else f"{float(value):.2g}"


def _column(table: pd.DataFrame, name: str) -> pd.Series:
    return table[name] if name in table else pd.Series([None] * len(table), index=table.index)


def _versus_champion(table: pd.DataFrame, champion_name: str | None) -> list[str]:
    """`-0.30 pp, p 0.0012, worse`: each row's paired test against the champion."""
    cells = []
    for row in table.itertuples():
        delta, p = getattr(row, "delta_vs_champion", None), getattr(row, "p_vs_champion", None)
        if row.model == champion_name:
            cells.append("champion")
        elif _missing(delta):
            cells.append("")
        else:
            cells.append(f"{_points(delta)}, p {_p_value(p)}, {row.verdict_vs_champion}")
    return cells


def _display(table: pd.DataFrame, champion_name: str | None = None) -> pd.DataFrame:
    """The table as people read it: percentages with 95% intervals, seconds, names, tests."""
    shown = pd.DataFrame({"model": table["model"], "kind": table["kind"]})
    shown["params"] = table["parameters"].map(lambda v: "" if pd.isna(v) else f"{int(v):,}")
    shown["epochs"] = table["epochs"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    shown["train time"] = table["train_seconds"].map(lambda v: "" if pd.isna(v) else f"{v:.0f} s")
    for label, split in (("val acc (95% CI)", "val"), ("test acc (95% CI)", "test")):
        shown[label] = [
            _with_interval(*values)
            for values in zip(
                table[f"{split}_accuracy"],
                _column(table, f"{split}_accuracy_low"),
                _column(table, f"{split}_accuracy_high"),
                strict=True,
            )
        ]
    _replicate_column(shown, table)
    if "delta_vs_baseline" in table:
        shown["Δ vs baseline"] = table["delta_vs_baseline"].map(_points)
        shown["b/c"] = [
            "" if _missing(b) else f"{int(b)}/{int(c)}"
            for b, c in zip(table["baseline_only"], table["candidate_only"], strict=True)
        ]
        shown["p"] = table["p_vs_baseline"].map(_p_value)
        shown["verdict"] = table["verdict_vs_baseline"].map(lambda v: "" if _missing(v) else v)
    if "delta_vs_champion" in table:
        shown["vs champion (test)"] = _versus_champion(table, champion_name)
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
    shown.loc[table["status"] != "ok", "test acc (95% CI)"] = "missing"
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
    compact = _display(table, champion_name).drop(
        columns=["kind", "Δ vs baseline", "b/c", "p", "verdict", "worst digit", "top confusion"],
        errors="ignore",
    )
    return "\n".join([*_measured(compact, when, machine), *_verdict(table, champion_name)]) + "\n"


def markdown_report(
    table: pd.DataFrame,
    figures: Mapping[str, str],
    when: str,
    machine: str,
    champion_name: str | None,
    notes: Sequence[str] = (),
    replicates: pd.DataFrame | None = None,
) -> str:
    """reports/report.md: the table, what its tests compare, the champion, every seed replicate
    (if `replicates`) and the figures (relative paths)."""
    shown = _display(table, champion_name)
    lines = ["# MNIST architecture comparison", "", *_measured(shown, when, machine)]
    for note in notes:
        lines += ["", note]
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
    notes: Sequence[str] = (),
) -> str:
    """A self-contained HTML page (figures inlined) that opens offline."""
    body = [
        "<h1>MNIST architecture comparison</h1>",
        f"<p>Measured {html.escape(when)} on {html.escape(machine)}.</p>",
        _display(table, champion_name).to_html(index=False, border=0, classes="results"),
        *(f"<p>{html.escape(note)}</p>" for note in notes),
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
