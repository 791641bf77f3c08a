"""Stage report: compare every model and the ensemble, crown a champion on validation.

Reads reports/models/<name>/{train.json,metrics.json,per_digit.csv,history.csv,probabilities.npz}
of every model in params.models, data/processed/dataset.npz (the normalisation and one real digit
as the served model's input example) and, through DVC, the baseline revision's stored test
predictions (DVC_EXP_BASELINE_REV, else HEAD: pipeline/baseline.py). Chooses an ensemble of the
trained models by greedy forward selection on the validation probabilities only, and the
champion (a model or the ensemble) by validation accuracy; tests every row on the test split
against the baseline and the champion (McNemar's exact test). Writes reports/report.md,
reports/report.html (self-contained), reports/figures/*.png, reports/validation_curves.csv (the
DVC plots overlaying every model's training and validation curves), reports/plots/ensemble/*.png
(both confusion matrices, the errors only, the most confident mistakes),
reports/ensemble_per_digit.csv, reports/summary.json and reports/metrics.json (the headline
numbers, DVC's only metrics file). With seed replicates (params.yaml `replicates`) it also reads
reports/models/<name>_r<k>/, shows each model's mean ± std over its replicates, checks its
target on the mean, and lets the ensemble choose among every replicate. Logs the ensemble into
an MLflow run of its own, the rest into a summary run linked to each model's run, and registers
the champion (a pyfunc that reads raw images) as a new version of tracking.registered_model with
the alias `champion` only in the workspace on a committed HEAD; a DVC experiment's champion gets
`exp-<experiment name>`, an uncommitted workspace's `workspace` (see _alias; `python -m
pipeline.promote` moves `champion` on purpose).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from pipeline import baseline, champion, data, io, paths, provenance, report
from pipeline.config import Params
from pipeline.entry import run_stage

log = logging.getLogger(__name__)
# The columns of reports/validation_curves.csv, every model's curves that dvc.yaml overlays.
CURVES = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def _model_runs(experiment: str, names: list[str]) -> dict[str, str]:
    """MLflow run of each model, found by the content hash of its model file."""
    from pipeline import tracking

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


def _ensemble(params: Params, stored: dict[str, dict]) -> dict | None:
    """Members chosen on validation, and the blend's scores, matrices and tables on both splits."""
    if not stored:
        return None
    first = next(iter(stored.values()))
    validation = {name: arrays["validation"] for name, arrays in stored.items()}
    weights = champion.greedy_ensemble(validation, first["y_validation"], params.ensemble.rounds)
    result: dict = {"weights": weights, "scores": {}, "y_test": first["y_test"]}
    for split, prefix in (("validation", "val"), ("test", "test")):
        blended = champion.blend({n: a[split] for n, a in stored.items()}, weights)
        result[f"{split}_predictions"] = blended.argmax(axis=1)
        scores, result[f"{split}_cm"], result[f"{split}_table"] = champion.split_scores(
            prefix,
            first[f"y_{split}"],
            blended,
            params.data.num_classes,
            params.evaluate.top_confusions,
        )
        result["scores"].update(scores)
        result[f"{split}_probabilities"] = blended
    return result


def main(params: Params) -> None:
    from pipeline import plots, serving, tracking

    names = list(params.models)
    experiment = tracking.connect(params.tracking)
    results = report.load_results(params.models, paths.MODEL_REPORTS_DIR)
    table = report.comparison_table(results)
    table, replicates, trainings = _with_replicates(params, table)
    stored = report.load_probabilities(trainings, paths.MODEL_REPORTS_DIR)
    ensemble = _ensemble(params, stored)
    dataset = data.load_dataset(paths.DATASET)
    extra_digits, extra_predictions = {}, {}
    if ensemble is not None:
        members = table if replicates is None else report.member_rows(replicates)
        row = report.ensemble_row(
            ensemble["weights"], members, ensemble["scores"], ensemble["scores"]
        )
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        extra_digits[champion.ENSEMBLE] = ensemble["test_table"]
        extra_predictions[champion.ENSEMBLE] = ensemble["test_predictions"]
        for path, figure in _ensemble_figures(params, ensemble, dataset["x_test"]).items():
            io.save_figure(path, figure)
        io.write_text(
            paths.REPORTS_DIR / "ensemble_per_digit.csv",
            ensemble["test_table"].to_csv(index=False),
        )
    best = report.champion(table)
    # Paired tests on the test split: against the baseline revision's stored predictions (read
    # through DVC) and against the champion.
    labels, predictions = report.test_predictions(stored, extra_predictions)
    before = baseline.read(names, baseline.revision())
    table = report.paired_tests(table, predictions, labels, before, best)
    notes = report.baseline_notes(before, labels, names)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = report.machine_description()

    histories = {r.spec.name: r.history for r in results if r.history is not None}
    figures = {
        "Per-digit test accuracy": (
            "per_digit_accuracy.png",
            plots.per_digit_heatmap(report.per_digit_matrix(results, extra_digits)),
        ),
        "Test accuracy against parameters": (
            "accuracy_vs_parameters.png",
            plots.accuracy_vs_params(table),
        ),
        "Validation accuracy per epoch": (
            "validation_curves.png",
            plots.curves_overlay(histories),
        ),
    }
    for file_name, figure in figures.values():
        io.save_figure(paths.REPORT_FIGURES_DIR / file_name, figure)
    curves = [
        history[list(CURVES)].assign(model=model)
        for model, history in histories.items()
        if set(CURVES) <= set(history)
    ]
    io.write_text(
        paths.REPORTS_DIR / "validation_curves.csv",
        pd.concat(curves).to_csv(index=False) if curves else ",".join([*CURVES, "model"]) + "\n",
    )
    pngs = {t: (paths.REPORT_FIGURES_DIR / f).read_bytes() for t, (f, _) in figures.items()}
    links = {t: f"figures/{f}" for t, (f, _) in figures.items()}
    io.write_text(
        paths.REPORTS_DIR / "report.md",
        report.markdown_report(table, links, when, machine, best, notes, replicates),
    )
    io.write_text(
        paths.REPORTS_DIR / "report.html",
        report.html_report(table, pngs, when, machine, best, notes),
    )
    io.write_text(paths.RESULTS, report.results_markdown(table, when, machine, best))
    summary = _summary(table, best, ensemble)
    if replicates is not None:
        summary["replicates"] = report.replicate_summary(table)
    io.write_json(paths.REPORTS_DIR / "summary.json", summary)
    io.write_json(paths.HEADLINE_METRICS, report.headline_metrics(table, best))
    log.info("champion (on validation): %s", best)

    runs = _model_runs(experiment, trainings)
    if ensemble is not None:
        runs[champion.ENSEMBLE] = _log_ensemble(experiment, ensemble, runs)
    tags = {
        "pipeline.stage": "report",
        "pipeline.champion": best or "none",
        **{f"pipeline.run.{model}": run_id for model, run_id in runs.items()},
        **provenance.git_tags(),
        **provenance.dvc_tags(),
    }
    with tracking.start_run(experiment, "report", tags) as run:
        run.log_table(table, "comparison.json")
        for file_name in (
            "report.md",
            "report.html",
            "results.md",
            "summary.json",
            "metrics.json",
        ):
            run.log_artifact(paths.REPORTS_DIR / file_name)
        run.log_artifact(paths.REPORT_FIGURES_DIR, "figures")
        model_uri = None
        if best is not None and params.tracking.log_model:
            weights = ensemble["weights"] if best == champion.ENSEMBLE else {best: 1}
            model_uri = run.log_digit_reader(
                {member: paths.model_file(member) for member in weights},
                serving.manifest(
                    weights,
                    dataset["mean"],
                    dataset["std"],
                    serving.RequestLimits(params.serving.max_images, params.serving.max_pixels),
                ),
                _example(dataset),
            )
    failures = run.failures
    if model_uri:
        alias = _alias()
        version = tracking.register_model(
            params.tracking.registered_model,
            model_uri,
            {
                "pipeline.model": best,
                "pipeline.run_id": runs.get(best, run.run_id),
                **provenance.git_tags(),
                **provenance.dvc_tags(),
            },
            alias,
        )
        log.info(
            "registered %s as %s@%s (version %s)",
            best,
            params.tracking.registered_model,
            alias,
            version,
        )
    if failures:
        run.raise_failures()


def _ensemble_figures(params: Params, ensemble: dict, x_test: np.ndarray) -> dict:
    """The ensemble's figures, as evaluate draws a model's: both confusion matrices, the test
    errors only, the most confident test mistakes (reports/plots/ensemble/*.png)."""
    from pipeline import metrics, plots

    folder = paths.model_plots(champion.ENSEMBLE)
    probabilities = ensemble["test_probabilities"]
    labels, predicted = ensemble["y_test"], probabilities.argmax(axis=1)
    wrong = metrics.misclassified_indices(
        labels, predicted, params.evaluate.grid_size, probabilities
    )
    return {
        folder / "confusion.png": plots.confusion_figure(
            ensemble["test_cm"], "ensemble: test confusion matrix"
        ),
        folder / "confusion_validation.png": plots.confusion_figure(
            ensemble["validation_cm"], "ensemble: validation confusion matrix"
        ),
        folder / "confusion_errors.png": plots.confusion_figure(
            ensemble["test_cm"],
            "ensemble: test errors only (diagonal removed)",
            hide_diagonal=True,
        ),
        folder / "misclassified.png": plots.digit_grid(
            x_test[wrong],
            labels[wrong],
            predicted[wrong],
            probabilities.max(axis=1)[wrong],
            "ensemble: most confident mistakes",
        ),
    }


def _alias() -> str:
    """The alias the champion gets: `exp-<name>` in a DVC experiment, `champion` in the workspace
    on a committed HEAD (provenance.uncommitted_sources), else `workspace`. Only the workspace's
    committed state, or `python -m pipeline.promote`, moves `@champion`."""
    from pipeline import tracking

    experiment = provenance.experiment_name()
    if experiment:
        return tracking.experiment_alias(experiment)
    changed = provenance.uncommitted_sources()
    if changed:
        log.info("not moving @champion: %s differ from HEAD", ", ".join(changed)[:300])
        return "workspace"
    return "champion"


def _with_replicates(
    params: Params, table: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """With seed replicates: the table with each model's mean ± std and its target checked on
    the mean, one row per training, and every training's name (the ensemble's candidates).
    Without: the table as it is, None, and the models' names."""
    if not params.replicates:
        return table, None, list(params.models)
    names = {model: params.replicate_names(model) for model in params.models}
    replicates = report.load_replicates(names, paths.MODEL_REPORTS_DIR)
    table = report.with_replicates(table, report.replicate_spread(replicates))
    return table, replicates, list(replicates["name"])


def _example(dataset: dict) -> str:
    """The first validation digit, back in [0, 1], as a base64 PNG: the served input example."""
    from pipeline import serving

    digit = dataset["x_val"][0].reshape(dataset["x_val"].shape[1:3])
    return serving.png_base64(digit * dataset["std"] + dataset["mean"])


def _summary(table: pd.DataFrame, best: str | None, ensemble: dict | None) -> dict:
    """summary.json: the champion, the rule that chose it, every row's two accuracies."""

    def number(value: object) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    summary: dict = {
        "champion": best,
        "chosen_on": "validation accuracy (ties: fewer parameters)",
        "models": {
            row.model: {
                "val_accuracy": number(row.val_accuracy),
                "test_accuracy": number(row.test_accuracy),
            }
            for row in table.itertuples()
        },
    }
    if ensemble is not None:
        singles = table[table["kind"] != "ensemble"]
        best_single = champion.choose(singles)
        summary["ensemble"] = {
            "members": ensemble["weights"],
            "val_accuracy": ensemble["scores"]["val_accuracy"],
            "test_accuracy": ensemble["scores"]["test_accuracy"],
        }
        if best_single is not None:
            summary["best_single"] = {
                "model": best_single,
                "test_accuracy": summary["models"][best_single]["test_accuracy"],
            }
    return summary


def _log_ensemble(experiment: str, ensemble: dict, runs: dict[str, str]) -> str:
    """The ensemble's own MLflow run: members, both splits' scores and confusion matrices."""
    from pipeline import tracking

    weights = ensemble["weights"]
    tags = {
        "pipeline.model": champion.ENSEMBLE,
        "pipeline.kind": "ensemble",
        # not "report": one run per report stage carries that, and tools look for the newest
        "pipeline.stage": "ensemble",
        "pipeline.members": report.members_text(weights),
        **{f"pipeline.run.{member}": runs[member] for member in weights if member in runs},
        **provenance.git_tags(),
        **provenance.dvc_tags(),
    }
    with tracking.start_run(experiment, champion.ENSEMBLE, tags) as run:
        run.log_params(
            {
                "ensemble.members": report.members_text(weights),
                **{f"ensemble.weight.{member}": count for member, count in weights.items()},
            }
        )
        numbers = {k: v for k, v in ensemble["scores"].items() if isinstance(v, int | float)}
        numbers.update(
            {
                f"test_accuracy_digit_{int(r.digit)}": float(r.accuracy)
                for r in ensemble["test_table"].itertuples()
            }
        )
        run.log_metrics(champion.tracking_names(numbers))
        run.log_table(ensemble["test_table"], "evaluation/per_digit.json")
        run.log_artifact(paths.model_plots(champion.ENSEMBLE), "evaluation/figures")
    run.raise_failures()
    return run.run_id


if __name__ == "__main__":
    run_stage(main, __doc__)
