"""Choosing the champion on the validation split: scores, greedy ensembles, the winner.

Pure functions on arrays and tables: no files, no MLflow. The chooser functions take validation
arrays only, so the test split cannot influence which model or ensemble wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline import metrics
from pipeline.config import ENSEMBLE as ENSEMBLE  # the ensemble's row, folder and run name


def split_scores(
    prefix: str, labels: np.ndarray, probabilities: np.ndarray, num_classes: int, top_k: int
) -> tuple[dict[str, float | int | str], np.ndarray, pd.DataFrame]:
    """Headline numbers of one split (`<prefix>_accuracy` and its 95% interval `_low`, `_high`,
    `_loss`, worst digit, top confusion), its confusion matrix and per-digit table."""
    predicted = probabilities.argmax(axis=1)
    cm = metrics.confusion_matrix(labels, predicted, num_classes)
    table = metrics.per_class_table(cm)
    top = metrics.top_confusions(cm, top_k)
    worst = table.loc[table["accuracy"].idxmin()]
    low, high = metrics.accuracy_interval(int(np.trace(cm)), int(cm.sum()))
    scores = {
        f"{prefix}_accuracy": metrics.accuracy(labels, predicted),
        f"{prefix}_accuracy_low": low,
        f"{prefix}_accuracy_high": high,
        f"{prefix}_loss": metrics.log_loss(labels, probabilities),
        f"{prefix}_worst_digit": int(worst["digit"]),
        f"{prefix}_worst_digit_accuracy": float(worst["accuracy"]),
        f"{prefix}_top_confusion": f"{top[0][0]}->{top[0][1]} ({top[0][2]})" if top else "none",
    }
    return scores, cm, table


def blend(probabilities: Mapping[str, np.ndarray], weights: Mapping[str, int]) -> np.ndarray:
    """The weighted mean of the members' probabilities (weights = times each was chosen)."""
    total = sum(weights.values())
    return sum(probabilities[name] * (count / total) for name, count in weights.items())


def greedy_ensemble(
    validation_probabilities: Mapping[str, np.ndarray], validation_labels: np.ndarray, rounds: int
) -> dict[str, int]:
    """Members chosen by greedy forward selection with replacement (Caruana et al., 2004).

    Each of `rounds` steps adds the model (again, if it helps most) whose addition gives the
    averaged probabilities the best validation accuracy, ties broken by the lower log loss and
    then by name. Returns how many times each member was chosen. Only validation arrays come in.
    """
    if not validation_probabilities:
        return {}
    names = sorted(validation_probabilities)
    labels = np.asarray(validation_labels)
    chosen: Counter[str] = Counter()
    running = np.zeros_like(next(iter(validation_probabilities.values())), dtype=np.float64)
    for step in range(1, rounds + 1):
        candidates = {
            name: (running * (step - 1) + validation_probabilities[name]) / step for name in names
        }
        best = min(
            names,
            key=lambda name: (
                -metrics.accuracy(labels, candidates[name].argmax(axis=1)),
                metrics.log_loss(labels, candidates[name]),
                name,
            ),
        )
        chosen[best] += 1
        running = candidates[best]
    return dict(sorted(chosen.items()))


def choose(table: pd.DataFrame) -> str | None:
    """The row with the best validation accuracy; ties go to fewer parameters, then table order.

    `table` needs the columns model, val_accuracy and parameters; rows without a validation
    accuracy cannot win.
    """
    scored = table.dropna(subset=["val_accuracy"])
    if scored.empty:
        return None
    ranked = scored.assign(
        _accuracy=-scored["val_accuracy"].astype(float),
        _parameters=pd.to_numeric(scored["parameters"], errors="coerce").fillna(np.inf),
        _order=range(len(scored)),
    ).sort_values(["_accuracy", "_parameters", "_order"])
    return str(ranked.iloc[0]["model"])


def tracking_names(numbers: dict) -> dict:
    """`val_*` as `validation_*`: in MLflow, `val_accuracy` is the training's per-epoch curve,
    and a point logged by evaluate would join it as a step 0."""
    return {
        f"validation_{key.removeprefix('val_')}" if key.startswith("val_") else key: value
        for key, value in numbers.items()
    }
