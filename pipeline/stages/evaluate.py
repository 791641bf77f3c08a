"""Stage evaluate_<kind>@<name>: test-set metrics and figures of one trained model.

Reads data/processed/dataset.npz, models/<name>.keras, reports/models/<name>/history.csv and
params (seed, evaluate, tracking). Writes into reports/models/<name>/: metrics.json (DVC metrics),
per_digit.csv, confusion.csv, top_confusions.csv, predictions.csv (DVC confusion plot) and
figures/*.png; logs all of it into the MLflow run that trained this exact model file.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline import data, io, metrics, paths, plots, provenance, tracking
from pipeline.config import Params
from pipeline.entry import run_stage
from pipeline.models import load_model

log = logging.getLogger(__name__)


def _figures(
    name: str,
    cm: np.ndarray,
    dataset: dict,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    grid_size: int,
    seed: int,
) -> dict:
    x_test, y_test = dataset["x_test"], dataset["y_test"]
    confidence = probabilities.max(axis=1)
    wrong = metrics.misclassified_indices(y_test, predicted, grid_size, probabilities)
    sample = np.sort(np.random.default_rng(seed).choice(len(y_test), grid_size, replace=False))
    history = pd.read_csv(paths.model_reports(name) / "history.csv")
    return {
        "history.png": plots.history_figure(history),
        "confusion.png": plots.confusion_figure(cm, f"{name}: confusion matrix"),
        "confusion_errors.png": plots.confusion_figure(
            cm, f"{name}: errors only (diagonal removed)", hide_diagonal=True
        ),
        "misclassified.png": plots.digit_grid(
            x_test[wrong],
            y_test[wrong],
            predicted[wrong],
            confidence[wrong],
            f"{name}: most confident mistakes",
        ),
        "samples.png": plots.digit_grid(
            x_test[sample],
            y_test[sample],
            predicted[sample],
            confidence[sample],
            f"{name}: random test predictions",
        ),
    }


def main(params: Params, name: str) -> None:
    config = params.evaluate
    experiment = tracking.connect(params.tracking)
    dataset = data.load_dataset(paths.DATASET)
    model_path = paths.model_file(name)
    model = load_model(model_path)

    y_test = dataset["y_test"]
    probabilities = model.predict(dataset["x_test"], batch_size=config.batch_size, verbose=0)
    predicted = probabilities.argmax(axis=1)
    cm = metrics.confusion_matrix(y_test, predicted, params.data.num_classes)
    table = metrics.per_class_table(cm)
    top = metrics.top_confusions(cm, config.top_confusions)
    worst = table.loc[table["accuracy"].idxmin()]
    results = {
        "test_accuracy": metrics.accuracy(y_test, predicted),
        "test_loss": metrics.log_loss(y_test, probabilities),
        "worst_digit": int(worst["digit"]),
        "worst_digit_accuracy": float(worst["accuracy"]),
        "top_confusion": f"{top[0][0]}->{top[0][1]} ({top[0][2]})" if top else "none",
        **{f"test_accuracy_digit_{int(r.digit)}": float(r.accuracy) for r in table.itertuples()},
        **metrics.calibration_summary(y_test, probabilities),
    }

    # Every figure is drawn before the first write: a fault there leaves the last outputs whole.
    figures = _figures(name, cm, dataset, predicted, probabilities, config.grid_size, params.seed)
    out = paths.model_reports(name)
    io.write_json(out / "metrics.json", results)
    io.write_text(out / "per_digit.csv", table.to_csv(index=False))
    confusion = pd.DataFrame(cm, index=pd.Index(range(len(cm)), name="true"))
    io.write_text(out / "confusion.csv", confusion.to_csv())
    top_frame = pd.DataFrame(top, columns=["true", "predicted", "count"])
    io.write_text(out / "top_confusions.csv", top_frame.to_csv(index=False))
    predictions = pd.DataFrame({"actual": y_test, "predicted": predicted})
    io.write_text(out / "predictions.csv", predictions.to_csv(index=False))
    for file_name, figure in figures.items():
        io.save_figure(out / "figures" / file_name, figure)
    log.info(
        "%s: test accuracy %.4f, worst digit %d (%.4f), top confusion %s",
        name,
        results["test_accuracy"],
        results["worst_digit"],
        results["worst_digit_accuracy"],
        results["top_confusion"],
    )

    # The run that trained this exact file; a run-cache restore still finds it by content.
    sha256 = provenance.file_sha256(model_path)
    run_id = tracking.find_run(experiment, {"pipeline.model_sha256": sha256})
    if run_id is None:
        log.warning("%s: no MLflow run trained %s here; logging into a new run", name, model_path)
    tags = {"pipeline.model": name, "pipeline.model_sha256": sha256, "pipeline.evaluated": "true"}
    with tracking.start_run(experiment, name, tags, run_id=run_id) as run:
        run.log_metrics({k: v for k, v in results.items() if isinstance(v, int | float)})
        run.set_tags({"pipeline.top_confusion": results["top_confusion"]})
        run.log_table(table, "evaluation/per_digit.json")
        for file_name in ("per_digit.csv", "confusion.csv", "top_confusions.csv"):
            run.log_artifact(out / file_name, "evaluation")
        run.log_artifact(out / "figures", "evaluation/figures")
    run.raise_failures()


if __name__ == "__main__":
    run_stage(main, __doc__, per_model=True)
