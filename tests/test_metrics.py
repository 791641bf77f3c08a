"""Metrics against small confusion matrices worked out by hand."""

import numpy as np
import pandas as pd
import pytest

from pipeline import metrics

# Three classes, ten samples. Rows are true labels, columns predictions:
#   true 0 -> 0, 0, 0, 1   row [3, 1, 0]   support 4, correct 3
#   true 1 -> 1, 1, 2      row [0, 2, 1]   support 3, correct 2
#   true 2 -> 2, 0, 0      row [2, 0, 1]   support 3, correct 1
# Column sums (times predicted): [5, 3, 2].
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 2, 2, 0, 0]
HAND_CM = np.array([[3, 1, 0], [0, 2, 1], [2, 0, 1]])


def test_confusion_matrix_counts_rows_true_columns_predicted():
    cm = metrics.confusion_matrix(Y_TRUE, Y_PRED, 3)

    np.testing.assert_array_equal(cm, HAND_CM)
    assert cm.dtype == np.int64


def test_confusion_matrix_keeps_classes_nobody_used():
    cm = metrics.confusion_matrix([0, 0], [0, 0], 4)

    assert cm.shape == (4, 4)
    assert cm[0, 0] == 2
    assert cm.sum() == 2


def test_confusion_matrix_accepts_integer_valued_floats():
    cm = metrics.confusion_matrix(np.array([1.0, 0.0]), np.array([1.0, 1.0]), 2)

    np.testing.assert_array_equal(cm, [[0, 1], [0, 1]])


@pytest.mark.parametrize(
    ("y_true", "y_pred", "message"),
    [
        ([0, 3], [0, 1], "y_true has label 3, outside the range \\[0, 3\\)"),
        ([0, 1], [0, -1], "y_pred has label -1"),
        ([0, 1.5], [0, 1], "y_true must hold integer labels, got 1.5"),
        ([0, 1], [0, np.nan], "y_pred must hold integer labels, got nan"),
        ([0, 1, 2], [0, 1], "y_true has 3 labels but y_pred has 2"),
        ([[0, 1]], [[0, 1]], "y_true must be a 1-D array"),
    ],
)
def test_confusion_matrix_rejects_bad_labels_naming_them(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        metrics.confusion_matrix(y_true, y_pred, 3)


@pytest.mark.parametrize("num_classes", [0, -2, 2.5, True])
def test_confusion_matrix_rejects_bad_class_count(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        metrics.confusion_matrix([0], [0], num_classes)


def test_accuracy_is_share_of_matching_labels():
    assert metrics.accuracy(Y_TRUE, Y_PRED) == pytest.approx(0.6)
    assert metrics.accuracy([4, 4], [4, 4]) == 1.0
    assert isinstance(metrics.accuracy([1], [2]), float)


def test_accuracy_rejects_empty_and_mismatched_input():
    with pytest.raises(ValueError, match="at least one label"):
        metrics.accuracy([], [])
    with pytest.raises(ValueError, match="y_true has 2 labels but y_pred has 1"):
        metrics.accuracy([0, 1], [0])


def test_per_class_table_matches_hand_computation():
    table = metrics.per_class_table(HAND_CM)

    assert list(table.columns) == [
        "digit",
        "support",
        "correct",
        "accuracy",
        "accuracy_low",
        "accuracy_high",
        "precision",
        "recall",
        "f1",
    ]
    assert table["digit"].tolist() == [0, 1, 2]
    assert table["support"].tolist() == [4, 3, 3]
    assert table["correct"].tolist() == [3, 2, 1]
    # recall = correct / row sum; precision = correct / column sum [5, 3, 2]
    np.testing.assert_allclose(table["recall"], [3 / 4, 2 / 3, 1 / 3])
    np.testing.assert_allclose(table["accuracy"], table["recall"])
    np.testing.assert_allclose(table["precision"], [3 / 5, 2 / 3, 1 / 2])
    # f1 = 2PR / (P + R): class 0: 0.9 / 1.35; class 1: 2/3; class 2: (1/3) / (5/6)
    np.testing.assert_allclose(table["f1"], [2 / 3, 2 / 3, 2 / 5])
    # each digit's interval is the Wilson interval of its correct / support
    assert (table["accuracy_low"][0], table["accuracy_high"][0]) == metrics.accuracy_interval(3, 4)
    assert (table["accuracy_low"] < table["accuracy"]).all()
    assert (table["accuracy"] < table["accuracy_high"]).all()


@pytest.mark.filterwarnings("error")
def test_per_class_table_defines_zero_over_zero_as_zero_without_warnings():
    # Class 1 never occurs and is never predicted; class 2 never occurs but is predicted once.
    table = metrics.per_class_table([[2, 0, 1], [0, 0, 0], [0, 0, 0]])

    assert table["support"].tolist() == [3, 0, 0]
    np.testing.assert_allclose(table["recall"], [2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(table["precision"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(table["f1"], [0.8, 0.0, 0.0])
    assert not table.isna().any().any()


@pytest.mark.parametrize(
    "cm", [[[1, 2, 3]], [[1, -1], [0, 2]], [[0.5, 0], [0, 1]], [[0, 0], [0, 0]]]
)
def test_per_class_table_rejects_a_malformed_matrix(cm):
    with pytest.raises(ValueError, match="confusion matrix"):
        metrics.per_class_table(cm)


def test_off_diagonal_zeroes_the_diagonal_of_a_copy():
    errors = metrics.off_diagonal(HAND_CM)

    np.testing.assert_array_equal(errors, [[0, 1, 0], [0, 0, 1], [2, 0, 0]])
    assert HAND_CM[0, 0] == 3  # the input is untouched


TIES_CM = np.array([[5, 2, 3], [3, 4, 0], [1, 2, 6]])


def test_top_confusions_orders_by_count_then_true_then_predicted():
    # Off-diagonal: (0,1)=2 (0,2)=3 (1,0)=3 (1,2)=0 (2,0)=1 (2,1)=2; the zero is left out.
    assert metrics.top_confusions(TIES_CM, 10) == [
        (0, 2, 3),
        (1, 0, 3),
        (0, 1, 2),
        (2, 1, 2),
        (2, 0, 1),
    ]


def test_top_confusions_truncates_to_k():
    assert metrics.top_confusions(TIES_CM, 3) == [(0, 2, 3), (1, 0, 3), (0, 1, 2)]
    assert metrics.top_confusions(TIES_CM, 0) == []


def test_top_confusions_of_a_perfect_classifier_is_empty():
    assert metrics.top_confusions(np.diag([5, 6, 7]), 5) == []


def test_top_confusions_returns_plain_ints():
    (true, predicted, count), *_ = metrics.top_confusions(HAND_CM, 1)

    assert (true, predicted, count) == (2, 0, 2)
    assert all(type(value) is int for value in (true, predicted, count))


def test_top_confusions_rejects_negative_k():
    with pytest.raises(ValueError, match="k must be non-negative, got -1"):
        metrics.top_confusions(HAND_CM, -1)


# Five samples over three classes. Confidence = max probability, prediction = its class.
#   s0 true 0, pred 0, conf 0.85  right  bin (0.8, 0.9]
#   s1 true 2, pred 1, conf 0.85  wrong  bin (0.8, 0.9]
#   s2 true 2, pred 2, conf 0.55  right  bin (0.5, 0.6]
#   s3 true 1, pred 0, conf 0.45  wrong  bin (0.4, 0.5]
#   s4 true 1, pred 1, conf 0.45  right  bin (0.4, 0.5]
# ECE = 2/5 * |0.5 - 0.85| + 1/5 * |1 - 0.55| + 2/5 * |0.5 - 0.45| = 0.14 + 0.09 + 0.02 = 0.25
CALIBRATION_TRUE = [0, 2, 2, 1, 1]
CALIBRATION_PROBABILITIES = [
    [0.85, 0.10, 0.05],
    [0.05, 0.85, 0.10],
    [0.25, 0.20, 0.55],
    [0.45, 0.35, 0.20],
    [0.30, 0.45, 0.25],
]


def test_calibration_summary_matches_hand_computation():
    summary = metrics.calibration_summary(CALIBRATION_TRUE, CALIBRATION_PROBABILITIES)

    assert summary["count_correct"] == 3
    assert summary["count_wrong"] == 2
    assert summary["mean_confidence_correct"] == pytest.approx((0.85 + 0.55 + 0.45) / 3)
    assert summary["mean_confidence_wrong"] == pytest.approx((0.85 + 0.45) / 2)
    assert summary["expected_calibration_error"] == pytest.approx(0.25)


def test_calibration_summary_without_mistakes_has_no_nan():
    summary = metrics.calibration_summary([0, 1], [[0.7, 0.3], [0.1, 0.9]])

    assert summary["count_wrong"] == 0
    assert summary["mean_confidence_wrong"] == 0.0
    assert summary["mean_confidence_correct"] == pytest.approx(0.8)
    # Bins (0.6, 0.7] and (0.8, 0.9], both all right: ECE = 1/2 * 0.3 + 1/2 * 0.1
    assert summary["expected_calibration_error"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("probabilities", "expected"),
    [
        # 0.5 is an exact edge: it belongs to (0.4, 0.5], apart from 0.55 in (0.5, 0.6], so
        # ECE = 1/2 * |1 - 0.5| + 1/2 * |0 - 0.55| = 0.525 (one shared bin would give 0.025).
        ([[0.5, 0.5], [0.55, 0.45]], 0.525),
        # 0.3 is not exact in floating point (0.3 * 10 > 3); it must still land in (0.2, 0.3]:
        # ECE = 1/2 * |1 - 0.3| + 1/2 * |0 - 0.35| = 0.525 (sharing (0.3, 0.4] would give 0.175).
        ([[0.3, 0.3, 0.2, 0.2], [0.35, 0.25, 0.2, 0.2]], 0.525),
    ],
)
def test_calibration_bins_are_closed_on_the_right(probabilities, expected):
    summary = metrics.calibration_summary([0, 1], probabilities)

    assert summary["expected_calibration_error"] == pytest.approx(expected)


def test_calibration_summary_returns_json_friendly_types():
    summary = metrics.calibration_summary(CALIBRATION_TRUE, CALIBRATION_PROBABILITIES)

    assert {key: type(value) for key, value in summary.items()} == {
        "mean_confidence_correct": float,
        "mean_confidence_wrong": float,
        "count_correct": int,
        "count_wrong": int,
        "expected_calibration_error": float,
    }


@pytest.mark.parametrize(
    ("y_true", "probabilities", "message"),
    [
        ([0, 1], [[1.0, 0.0]], "y_true has 2 labels but probabilities has 1"),
        ([0], [1.0, 0.0], "probabilities must have shape \\[N, classes\\]"),
        ([0], [[1.5, -0.5]], "finite values in \\[0, 1\\]"),
        ([0], [[np.nan, 0.5]], "finite values in \\[0, 1\\]"),
        ([2], [[0.5, 0.5]], "y_true has label 2, outside the range \\[0, 2\\)"),
        ([], np.zeros((0, 3)), "at least one label"),
    ],
)
def test_calibration_summary_rejects_bad_input(y_true, probabilities, message):
    with pytest.raises(ValueError, match=message):
        metrics.calibration_summary(y_true, probabilities)


# Wrong at 1, 3 and 4; probability of the predicted class there: 0.6, 0.9, 0.6.
MISS_TRUE = [0, 1, 2, 3, 4]
MISS_PRED = [0, 2, 2, 0, 1]
MISS_PROBABILITIES = np.array(
    [
        [0.9, 0.1, 0.0, 0.0, 0.0],
        [0.1, 0.3, 0.6, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0, 0.0],
        [0.9, 0.0, 0.0, 0.1, 0.0],
        [0.0, 0.6, 0.0, 0.0, 0.4],
    ]
)


def test_misclassified_indices_most_confident_first_ties_in_dataset_order():
    indices = metrics.misclassified_indices(MISS_TRUE, MISS_PRED, 10, MISS_PROBABILITIES)

    np.testing.assert_array_equal(indices, [3, 1, 4])
    assert indices.dtype == np.int64


def test_misclassified_indices_respects_limit():
    np.testing.assert_array_equal(
        metrics.misclassified_indices(MISS_TRUE, MISS_PRED, 2, MISS_PROBABILITIES), [3, 1]
    )
    assert metrics.misclassified_indices(MISS_TRUE, MISS_PRED, 0, MISS_PROBABILITIES).size == 0


def test_misclassified_indices_without_probabilities_keeps_dataset_order():
    np.testing.assert_array_equal(metrics.misclassified_indices(MISS_TRUE, MISS_PRED, 2), [1, 3])


def test_misclassified_indices_of_perfect_predictions_is_empty():
    indices = metrics.misclassified_indices([0, 1], [0, 1], 5, [[1.0, 0.0], [0.0, 1.0]])

    assert indices.shape == (0,)


def test_misclassified_indices_rejects_bad_input():
    with pytest.raises(ValueError, match="limit must be non-negative"):
        metrics.misclassified_indices(MISS_TRUE, MISS_PRED, -1)
    with pytest.raises(ValueError, match="y_pred has label 5, outside the range \\[0, 5\\)"):
        metrics.misclassified_indices([0], [5], 1, [[1.0, 0.0, 0.0, 0.0, 0.0]])


def test_per_class_table_of_a_computed_matrix_agrees_with_accuracy():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 10, 500))

    table = metrics.per_class_table(metrics.confusion_matrix(y_true, y_pred, 10))

    assert isinstance(table, pd.DataFrame)
    assert table["support"].sum() == 500
    assert table["correct"].sum() / 500 == pytest.approx(metrics.accuracy(y_true, y_pred))


def test_log_loss_matches_hand_computed_cross_entropy() -> None:
    probabilities = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
    expected = -(np.log(0.5) + np.log(0.75) + np.log(1.0)) / 3
    assert metrics.log_loss([0, 1, 0], probabilities) == pytest.approx(expected)
    certain_and_wrong = metrics.log_loss([1], np.array([[1.0, 0.0]]))  # clipped, not infinite
    assert np.isfinite(certain_and_wrong) and certain_and_wrong > 10


def test_log_loss_takes_a_float32_softmax_in_either_precision() -> None:
    logits = np.random.default_rng(3).normal(size=(200, 10)).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.arange(200) % 10
    expected = -np.mean(np.log(probabilities[np.arange(200), labels].astype(np.float64)))
    assert metrics.log_loss(labels, probabilities) == pytest.approx(expected, rel=1e-6)
    # the same numbers held as float64 (e.g. an average of models' outputs) are as good
    as_float64 = probabilities.astype(np.float64)
    assert metrics.log_loss(labels, as_float64) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- intervals and paired tests


def test_accuracy_interval_of_9850_in_10000_is_the_wilson_closed_form():
    # Wilson (1927), as written in Newcombe (1998), Stat. Med. 17:857, method 3:
    # (2np + z² ± z·sqrt(z² + 4np(1-p))) / (2(n + z²)), z = 1.959964 (two-sided 95%).
    # Worked in 30-digit decimal arithmetic: 0.98242456407 to 0.98720295751.
    low, high = metrics.accuracy_interval(9_850, 10_000)

    assert low == pytest.approx(0.98242456407, abs=1e-10)
    assert high == pytest.approx(0.98720295751, abs=1e-10)


@pytest.mark.parametrize(
    ("correct", "total", "published"),
    [
        # Newcombe (1998), Table I, method 3 (score interval without continuity correction)
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_accuracy_interval_matches_newcombes_published_table(correct, total, published):
    interval = metrics.accuracy_interval(correct, total)

    assert [round(bound, 4) for bound in interval] == list(published)


def test_accuracy_interval_stays_inside_zero_and_one_near_100_percent():
    low, high = metrics.accuracy_interval(10_000, 10_000)

    assert 0.999 < low < 1.0 and high == pytest.approx(1.0)
    assert metrics.accuracy_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("correct", "total"), [(5, 4), (-1, 4), (0, -1)])
def test_accuracy_interval_rejects_impossible_counts(correct, total):
    with pytest.raises(ValueError, match="correct <= total"):
        metrics.accuracy_interval(correct, total)


def test_mcnemar_p_by_hand_and_against_scipy():
    # 0 against 6: both one-sided tails are 0.5**6, so p = 2 / 64
    assert metrics.mcnemar_p(0, 6) == 0.03125
    assert metrics.mcnemar_p(6, 0) == 0.03125
    assert metrics.mcnemar_p(0, 0) == 1.0
    # 10 against 20: twice the binomial tail P(X <= 10), X ~ Bin(30, 1/2)
    from scipy.stats import binom

    assert metrics.mcnemar_p(10, 20) == pytest.approx(2 * binom.cdf(10, 30, 0.5))
    assert metrics.mcnemar_p(10, 20) == pytest.approx(0.0987371467)


def test_paired_test_counts_the_discordant_images():
    y_true = [0, 1, 2, 3, 4, 5, 6, 7]
    baseline = [0, 1, 2, 3, 9, 9, 9, 7]  # wrong on 4, 5, 6
    candidate = [0, 9, 2, 3, 4, 5, 6, 7]  # wrong on 1 only

    result = metrics.paired_test(y_true, baseline, candidate)

    assert (result.baseline_only, result.candidate_only) == (1, 3)
    assert result.delta == pytest.approx(2 / 8)
    assert result.p == pytest.approx(metrics.mcnemar_p(1, 3)) and result.p == 0.625
    assert result.verdict == "within noise"


def test_paired_test_of_a_model_with_itself_is_zero_and_p_one():
    predicted = [0, 1, 1, 3, 2]

    result = metrics.paired_test([0, 1, 2, 3, 4], predicted, predicted)

    assert result == metrics.PairedTest(0.0, 0, 0, 1.0, "within noise")


def test_paired_test_verdicts_at_five_percent():
    y_true = np.zeros(20, dtype=int)
    right, wrong = np.zeros(20, dtype=int), np.ones(20, dtype=int)
    mostly_wrong = wrong.copy()
    mostly_wrong[:14] = 0  # 6 wrong of 20

    better = metrics.paired_test(y_true, mostly_wrong, right)  # 0 against 6: p = 0.03125
    worse = metrics.paired_test(y_true, right, mostly_wrong)

    assert (better.verdict, better.p, better.delta) == ("better", 0.03125, 0.3)
    assert (worse.verdict, worse.delta) == ("worse", -0.3)
    five = wrong.copy()
    five[:15] = 0  # 0 against 5: p = 0.0625
    assert metrics.paired_test(y_true, five, right).verdict == "within noise"


def test_paired_test_rejects_predictions_of_other_images():
    with pytest.raises(ValueError, match="y_true has 3 labels but y_pred has 2"):
        metrics.paired_test([0, 1, 2], [0, 1], [0, 1, 2])
