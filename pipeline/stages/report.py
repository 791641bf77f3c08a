"""Stage report: compare every model and crown a champion.

Reads reports/models/<name>/{train.json,metrics.json,per_digit.csv,history.csv} of every model in
params.models, and HEAD's committed metrics as the baseline. Writes reports/report.md,
reports/report.html (self-contained), reports/figures/*.png and reports/summary.json (DVC
metrics); logs them to an MLflow summary run linked to each model's run, and registers the best
model under tracking.registered_model with the alias `champion`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from pipeline import io, paths, plots, provenance, report, tracking
from pipeline.config import Params
from pipeline.entry import run_stage

log = logging.getLogger(__name__)


def _baseline(names: list[str]) -> dict[str, float]:
    """Test accuracy per model in the committed (HEAD) metrics files."""
    baseline = {}
    for name in names:
        text = provenance.committed_text(paths.model_reports(name) / "metrics.json")
        try:
            baseline[name] = float(json.loads(text)["test_accuracy"]) if text else None
        except (ValueError, KeyError, TypeError):
            continue
    return {k: v for k, v in baseline.items() if v is not None}


def _model_runs(experiment: str, names: list[str]) -> dict[str, str]:
    """MLflow run of each model, found by the content hash of its model file."""
    runs = {}
    for name in names:
        path = paths.model_file(name)
        if path.is_file():
            run_id = tracking.find_run(
                experiment, {"pipeline.model_sha256": provenance.file_sha256(path)}
            )
            if run_id:
                runs[name] = run_id
    return runs


def main(params: Params) -> None:
    experiment = tracking.connect(params.tracking)
    names = list(params.models)
    results = report.load_results(params.models, paths.MODEL_REPORTS_DIR)
    table = report.comparison_table(results, _baseline(names))
    best = report.champion(table)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = report.machine_description()

    figures = {
        "Per-digit test accuracy": (
            "per_digit_accuracy.png",
            plots.per_digit_heatmap(report.per_digit_matrix(results)),
        ),
        "Test accuracy against parameters": (
            "accuracy_vs_parameters.png",
            plots.accuracy_vs_params(table),
        ),
        "Validation accuracy per epoch": (
            "validation_curves.png",
            plots.curves_overlay(
                {r.spec.name: r.history for r in results if r.history is not None}
            ),
        ),
    }
    for file_name, figure in figures.values():
        io.save_figure(paths.REPORT_FIGURES_DIR / file_name, figure)
    pngs = {t: (paths.REPORT_FIGURES_DIR / f).read_bytes() for t, (f, _) in figures.items()}
    links = {t: f"figures/{f}" for t, (f, _) in figures.items()}
    io.write_text(
        paths.REPORTS_DIR / "report.md", report.markdown_report(table, links, when, machine, best)
    )
    io.write_text(
        paths.REPORTS_DIR / "report.html", report.html_report(table, pngs, when, machine, best)
    )
    io.write_text(paths.RESULTS, report.results_markdown(table, when, machine))
    summary = {
        "champion": best,
        "models": {row.model: {"test_accuracy": row.test_accuracy} for row in table.itertuples()},
    }
    io.write_json(paths.REPORTS_DIR / "summary.json", summary)
    log.info("champion: %s", best)

    runs = _model_runs(experiment, names)
    tags = {
        "pipeline.stage": "report",
        "pipeline.champion": best or "none",
        **{f"pipeline.run.{name}": run_id for name, run_id in runs.items()},
        **provenance.git_tags(),
        **provenance.dvc_tags(),
    }
    with tracking.start_run(experiment, "report", tags) as run:
        run.log_table(table, "comparison.json")
        for file_name in ("report.md", "report.html", "results.md", "summary.json"):
            run.log_artifact(paths.REPORTS_DIR / file_name)
        run.log_artifact(paths.REPORT_FIGURES_DIR, "figures")
    if best in runs:
        version = tracking.register_champion(params.tracking.registered_model, runs[best])
        log.info(
            "registered %s as %s@champion (version %s)",
            best,
            params.tracking.registered_model,
            version,
        )
    run.raise_failures()


if __name__ == "__main__":
    run_stage(main, __doc__)
