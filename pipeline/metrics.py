"""Classification metrics as pure functions: sklearn.metrics where it has them, no I/O.

Kept here because no library has them: the calibration summary (two mean confidences and a
10-bin ECE), the top confusions and the most confident mistakes. Intervals and paired tests come
from scipy.stats. sklearn.metrics and scipy are imported in the functions that use them (about a
second), so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

CALIBRATION_BINS = 10
PER_CLASS_COLUMNS = (
    "digit",
    "support",
    "correct",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "precision",
    "recall",
    "f1",
)
CONFIDENCE = 0.95  # of every accuracy interval
ALPHA = 0.05  # the significance level of the paired tests' verdicts


def _labels(values: ArrayLike, name: str, num_classes: int | None = None) -> np.ndarray:
    """Return `values` as a 1-D int64 label array, or raise ValueError naming the bad value."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        # Integer-valued floats (e.g. labels stored as float32) are fine; 2.5 or NaN are not.
        is_number = np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)
        integral = np.isfinite(array) & (array == np.round(array)) if is_number else None
        if integral is None or not integral.all():
            bad = array[0] if integral is None else array[~integral][0]
            raise ValueError(f"{name} must hold integer labels, got {bad.item()!r}")
    if num_classes is not None:
        out_of_range = (array < 0) | (array >= num_classes)
        if out_of_range.any():
            bad = array[out_of_range][0].item()
            raise ValueError(f"{name} has label {bad}, outside the range [0, {num_classes})")
    return array.astype(np.int64)


def _label_pair(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate true and predicted labels together: both 1-D, same length, in range."""
    true = _labels(y_true, "y_true", num_classes)
    pred = _labels(y_pred, "y_pred", num_classes)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    return true, pred


def _square_counts(cm: ArrayLike) -> np.ndarray:
    """Return `cm` as an int64 square matrix of non-negative counts, or raise ValueError."""
    matrix = np.asarray(cm)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    if matrix.size and (
        not np.issubdtype(matrix.dtype, np.integer) and not np.all(matrix == np.round(matrix))
    ):
        raise ValueError("confusion matrix must hold integer counts")
    if (matrix < 0).any():
        raise ValueError(f"confusion matrix has a negative count: {matrix[matrix < 0][0]}")
    return matrix.astype(np.int64)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator with 0/0 (and x/0) defined as 0.0, without warnings."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts as int64 [num_classes, num_classes]: rows are true labels, columns predicted."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    true, pred = _label_pair(y_true, y_pred, num_classes)
    labels = np.arange(num_classes)
    return sklearn_confusion_matrix(true, pred, labels=labels).astype(np.int64)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of predictions equal to the true label."""
    from sklearn.metrics import accuracy_score

    true, pred = _label_pair(y_true, y_pred)
    if true.size == 0:
        raise ValueError("accuracy needs at least one label, got none")
    return float(accuracy_score(true, pred))


def accuracy_interval(correct: int, total: int) -> tuple[float, float]:
    """The 95% Wilson score interval of `correct` right answers out of `total`.

    A proportion of zero answers is unknown: (0.0, 1.0).
    """
    from scipy.stats import binomtest

    if total < 0 or not 0 <= correct <= max(total, 0):
        raise ValueError(f"need 0 <= correct <= total, got {correct} of {total}")
    if total == 0:
        return 0.0, 1.0
    # Wilson, not a bootstrap: closed form, right near 100% (never past it), no resampling
    # noise, so the same predictions always give the same interval.
    interval = binomtest(int(correct), int(total)).proportion_ci(CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class PairedTest:
    """Two classifiers on the same images: McNemar's exact test on their disagreements.

    delta: candidate minus baseline accuracy (a fraction); baseline_only: images only the
    baseline gets right (b); candidate_only: images only the candidate gets right (c).
    """

    delta: float
    baseline_only: int
    candidate_only: int
    p: float
    verdict: str  # "better", "worse" or "within noise" at ALPHA


def mcnemar_p(baseline_only: int, candidate_only: int) -> float:
    """Two-sided exact McNemar p: the discordant pairs as a binomial test of p = 0.5."""
    from scipy.stats import binomtest

    if baseline_only < 0 or candidate_only < 0:
        raise ValueError(
            f"discordant counts must be non-negative, got {baseline_only} and {candidate_only}"
        )
    discordant = int(baseline_only) + int(candidate_only)
    if discordant == 0:
        return 1.0
    return float(binomtest(int(candidate_only), discordant, 0.5).pvalue)


def paired_test(y_true: ArrayLike, baseline: ArrayLike, candidate: ArrayLike) -> PairedTest:
    """Compare two sets of predicted labels for the same images with McNemar's exact test."""
    true, before = _label_pair(y_true, baseline)
    _, after = _label_pair(true, candidate)
    if true.size == 0:
        raise ValueError("a paired test needs at least one image, got none")
    right_before, right_after = before == true, after == true
    baseline_only = int(np.sum(right_before & ~right_after))
    candidate_only = int(np.sum(right_after & ~right_before))
    p = mcnemar_p(baseline_only, candidate_only)
    delta = (candidate_only - baseline_only) / true.size
    verdict = "within noise" if p >= ALPHA else ("better" if delta > 0 else "worse")
    return PairedTest(delta, baseline_only, candidate_only, p, verdict)


def per_class_table(cm: ArrayLike) -> pd.DataFrame:
    """One row per class: digit, support, correct, accuracy and its 95% interval, precision,
    recall, f1 (0/0 is 0.0)."""
    from sklearn.metrics import precision_recall_fscore_support

    matrix = _square_counts(cm)
    if not matrix.any():
        raise ValueError("confusion matrix holds no samples")
    classes = np.arange(matrix.shape[0], dtype=np.int64)
    # sklearn scores label arrays, not a matrix: one (true, predicted) pair per counted sample.
    true, pred = np.divmod(np.repeat(np.arange(matrix.size), matrix.ravel()), matrix.shape[0])
    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=classes, zero_division=0.0
    )
    low, high = zip(*map(accuracy_interval, np.diag(matrix), support), strict=True)
    return pd.DataFrame(
        {
            "digit": classes,
            "support": support.astype(np.int64),
            "correct": np.diag(matrix),
            "accuracy": recall,  # per class, accuracy and recall are the same number
            "accuracy_low": low,
            "accuracy_high": high,
            "precision": precision,
            "recall": recall,
            "f1": f1,
        },
        columns=list(PER_CLASS_COLUMNS),
    )


def off_diagonal(cm: ArrayLike) -> np.ndarray:
    """A copy of `cm` with the diagonal (the correct predictions) set to zero."""
    errors = _square_counts(cm).copy()
    np.fill_diagonal(errors, 0)
    return errors


def top_confusions(cm: ArrayLike, k: int) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count); ties go by (true, pred)."""
    if k < 0:
        raise ValueError(f"k must be non-negative, got {k}")
    errors = off_diagonal(cm)
    true, pred = np.nonzero(errors)  # row-major, so already ordered by (true, pred)
    counts = errors[true, pred]
    order = np.argsort(-counts, kind="stable")[:k]
    return [(int(true[i]), int(pred[i]), int(counts[i])) for i in order]


def _probabilities(y_true: np.ndarray, probabilities: ArrayLike) -> np.ndarray:
    """Validate a [N, num_classes] probability array against N true labels."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must have shape [N, classes], got {probs.shape}")
    if probs.shape[0] != y_true.size:
        raise ValueError(f"y_true has {y_true.size} labels but probabilities has {probs.shape[0]}")
    if probs.size and not (np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()):
        raise ValueError("probabilities must be finite values in [0, 1]")
    return probs


def calibration_summary(y_true: ArrayLike, probabilities: ArrayLike) -> dict[str, float | int]:
    """Mean confidence of right and wrong predictions, their counts, and the 10-bin ECE."""
    true = _labels(y_true, "y_true")
    probs = _probabilities(true, probabilities)
    if true.size == 0:
        raise ValueError("calibration_summary needs at least one label, got none")
    true = _labels(true, "y_true", probs.shape[1])
    pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    hit = pred == true

    # Equal-width bins (0, 0.1], ... (0.9, 1], closed on the right; a confidence of 0 joins bin 0.
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    bin_of = np.digitize(confidence, edges[1:-1], right=True)
    in_bin = np.bincount(bin_of, minlength=CALIBRATION_BINS)
    bin_accuracy = _safe_ratio(
        np.bincount(bin_of, weights=hit, minlength=CALIBRATION_BINS), in_bin
    )
    bin_confidence = _safe_ratio(
        np.bincount(bin_of, weights=confidence, minlength=CALIBRATION_BINS), in_bin
    )
    ece = float(np.sum(in_bin / true.size * np.abs(bin_accuracy - bin_confidence)))

    return {
        "mean_confidence_correct": float(confidence[hit].mean()) if hit.any() else 0.0,
        "mean_confidence_wrong": float(confidence[~hit].mean()) if (~hit).any() else 0.0,
        "count_correct": int(hit.sum()),
        "count_wrong": int((~hit).sum()),
        "expected_calibration_error": ece,
    }


def misclassified_indices(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    limit: int,
    probabilities: ArrayLike | None = None,
) -> np.ndarray:
    """Indices of up to `limit` wrong predictions: most confident first if probabilities are given.

    Without probabilities the indices come in dataset order; ties in confidence keep dataset order.
    """
    if limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    true, pred = _label_pair(y_true, y_pred)
    wrong = np.flatnonzero(true != pred)
    if probabilities is not None:
        probs = _probabilities(true, probabilities)
        true, pred = _label_pair(true, pred, probs.shape[1])
        confidence = probs[wrong, pred[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    return wrong[:limit].astype(np.int64)


def log_loss(y_true: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean categorical cross-entropy of the true class (clipped at float32's epsilon)."""
    from sklearn.metrics import log_loss as sklearn_log_loss

    true = _labels(y_true, "y_true")
    probs = _probabilities(true, probabilities)
    true = _labels(true, "y_true", probs.shape[1])
    # In float32, the models' own precision: sklearn wants each row to sum to 1 within the
    # dtype's tolerance, which a float32 softmax (or an average of them) held as float64 misses.
    given = probs.astype(np.float32)
    return float(sklearn_log_loss(true, given, labels=np.arange(probs.shape[1])))
