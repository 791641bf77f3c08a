"""Stage evaluate_<kind>@<name>: validation and test metrics and figures of one trained model.

Reads data/processed/dataset.npz, models/<name>.keras, reports/models/<name>/history.csv and
params (seed, evaluate, tracking). Writes into reports/models/<name>/: metrics.json (validation
and test accuracy, each with its 95% Wilson interval `_low`/`_high`, and loss, the test split's
worst digit and top confusion), per_digit.csv (each digit's accuracy and interval),
confusion.csv, top_confusions.csv (test split), probabilities.npz (both splits' probabilities
and labels, which the report stage ensembles without retraining),
predictions_{validation,test}.csv (each image's actual and predicted digit: DVC's confusion
plots) and figures/*.png;
into reports/plots/<name>/ the DVC image plots (both confusion matrices, the misclassified grid).
Logs all of it into the MLflow run that trained this exact model file without reopening it, so
that run's duration stays its training time and its status FINISHED.
Stage evaluate_<kind>_replicate@<name>-<k> does the same for seed replicate k, `<name>_r<k>`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import data, io, paths, provenance
from pipeline.config import Params
from pipeline.entry import run_stage

log = logging.getLogger(__name__)


def _confusion_figures(name: str, split: str, cm: np.ndarray) -> dict:
    """The confusion matrix of one split, whole and with its diagonal removed."""
    from pipeline import plots

    return {
        "confusion": plots.confusion_figure(cm, f"{name}: {split} confusion matrix"),
        "confusion_errors": plots.confusion_figure(
            cm, f"{name}: {split} errors only (diagonal removed)", hide_diagonal=True
        ),
    }


def write_confusion_data(path: Path, actual: np.ndarray, predicted: np.ndarray) -> None:
    """DVC's `confusion` plot data: one row per image, its `actual` and `predicted` digit."""
    rows = pd.DataFrame({"actual": actual.astype(int), "predicted": predicted.astype(int)})
    io.write_text(path, rows.to_csv(index=False))


def main(params: Params, name: str) -> None:
    from pipeline import champion, metrics, plots, tracking
    from pipeline.models import load_model

    config = params.evaluate
    spec, replicate = params.replicate(name)
    experiment = tracking.connect(params.tracking)
    dataset = data.load_dataset(paths.DATASET)
    model_path = paths.model_file(name)
    model = load_model(model_path)

    splits = {"validation": ("x_val", "y_val", "val"), "test": ("x_test", "y_test", "test")}
    probabilities, scores, matrices, tables = {}, {}, {}, {}
    for split, (x_key, y_key, prefix) in splits.items():
        probabilities[split] = model.predict(
            dataset[x_key], batch_size=config.batch_size, verbose=0
        )
        numbers, matrices[split], tables[split] = champion.split_scores(
            prefix,
            dataset[y_key],
            probabilities[split],
            params.data.num_classes,
            config.top_confusions,
        )
        scores.update(numbers)
    y_test, test_probabilities = dataset["y_test"], probabilities["test"]
    results = {
        "val_accuracy": scores["val_accuracy"],
        "val_accuracy_low": scores["val_accuracy_low"],
        "val_accuracy_high": scores["val_accuracy_high"],
        "val_loss": scores["val_loss"],
        "test_accuracy": scores["test_accuracy"],
        "test_accuracy_low": scores["test_accuracy_low"],
        "test_accuracy_high": scores["test_accuracy_high"],
        "test_loss": scores["test_loss"],
        "worst_digit": scores["test_worst_digit"],
        "worst_digit_accuracy": scores["test_worst_digit_accuracy"],
        "top_confusion": scores["test_top_confusion"],
    }
    # MLflow gets the details too; metrics.json keeps to the headline numbers.
    details = {
        **{
            f"test_accuracy_digit_{int(r.digit)}": float(r.accuracy)
            for r in tables["test"].itertuples()
        },
        **{
            f"validation_accuracy_digit_{int(r.digit)}": float(r.accuracy)
            for r in tables["validation"].itertuples()
        },
        **metrics.calibration_summary(y_test, test_probabilities),
    }

    out = paths.model_reports(name)
    figures_dir, plots_dir = out / "figures", paths.model_plots(name)
    test = _confusion_figures(name, "test", matrices["test"])
    validation = _confusion_figures(name, "validation", matrices["validation"])
    predicted = test_probabilities.argmax(axis=1)
    confidence = test_probabilities.max(axis=1)
    wrong = metrics.misclassified_indices(y_test, predicted, config.grid_size, test_probabilities)
    sample = np.sort(
        np.random.default_rng(params.seed).choice(len(y_test), config.grid_size, replace=False)
    )
    history = pd.read_csv(out / "history.csv")
    # Every figure is drawn before the first write: a fault there leaves the last outputs whole.
    figures = {
        figures_dir / "history.png": plots.history_figure(history),
        figures_dir / "confusion_errors.png": test["confusion_errors"],
        figures_dir / "samples.png": plots.digit_grid(
            dataset["x_test"][sample],
            y_test[sample],
            predicted[sample],
            confidence[sample],
            f"{name}: random test predictions",
        ),
        plots_dir / "confusion.png": test["confusion"],
        plots_dir / "confusion_validation.png": validation["confusion"],
        plots_dir / "misclassified.png": plots.digit_grid(
            dataset["x_test"][wrong],
            y_test[wrong],
            predicted[wrong],
            confidence[wrong],
            f"{name}: most confident mistakes",
        ),
    }

    top = metrics.top_confusions(matrices["test"], config.top_confusions)
    io.write_json(out / "metrics.json", results)
    io.write_with(
        out / "probabilities.npz",
        lambda tmp: np.savez_compressed(
            tmp,
            validation=probabilities["validation"].astype(np.float32),
            test=test_probabilities.astype(np.float32),
            y_validation=dataset["y_val"],
            y_test=y_test,
        ),
    )
    io.write_text(out / "per_digit.csv", tables["test"].to_csv(index=False))
    confusion = pd.DataFrame(
        matrices["test"], index=pd.Index(range(params.data.num_classes), name="true")
    )
    io.write_text(out / "confusion.csv", confusion.to_csv())
    top_frame = pd.DataFrame(top, columns=["true", "predicted", "count"])
    io.write_text(out / "top_confusions.csv", top_frame.to_csv(index=False))
    for path, figure in figures.items():
        io.save_figure(path, figure)
    for split, (_, y_key, _) in splits.items():
        write_confusion_data(
            out / f"predictions_{split}.csv", dataset[y_key], probabilities[split].argmax(axis=1)
        )
    log.info(
        "%s: validation accuracy %.4f, test accuracy %.4f, worst digit %d (%.4f), top %s",
        name,
        results["val_accuracy"],
        results["test_accuracy"],
        results["worst_digit"],
        results["worst_digit_accuracy"],
        results["top_confusion"],
    )

    # The run that trained this exact file; a model DVC restores (checkout) still finds it.
    sha256 = provenance.file_sha256(model_path)
    run_id = tracking.find_run(experiment, {"pipeline.model_sha256": sha256})
    tags = {
        "pipeline.model": spec.name,  # a replicate's too: MLflow groups the runs by this tag
        "pipeline.replicate": str(replicate),
        "pipeline.model_sha256": sha256,
        "pipeline.evaluated": "true",
    }
    if run_id is None:
        log.warning("%s: no MLflow run trained %s here; logging into a new run", name, model_path)
        with tracking.start_run(experiment, name, tags) as run:
            _log(run, results, details, tables["test"], out, figures_dir, plots_dir)
    else:
        run = tracking.attach_run(run_id)
        run.set_tags(tags)
        _log(run, results, details, tables["test"], out, figures_dir, plots_dir)
    run.raise_failures()


def _log(run, results, details, table, out, figures_dir, plots_dir) -> None:
    """Everything evaluate wrote, into the model's run."""
    from pipeline import champion

    numbers = {k: v for k, v in {**results, **details}.items() if isinstance(v, int | float)}
    run.log_metrics(champion.tracking_names(numbers))
    run.set_tags({"pipeline.top_confusion": results["top_confusion"]})
    run.log_table(table, "evaluation/per_digit.json")
    for file_name in ("per_digit.csv", "confusion.csv", "top_confusions.csv"):
        run.log_artifact(out / file_name, "evaluation")
    run.log_artifact(figures_dir, "evaluation/figures")
    run.log_artifact(plots_dir, "evaluation/figures")


if __name__ == "__main__":
    run_stage(main, __doc__, per_model=True)
