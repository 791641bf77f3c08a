"""The champion chosen on validation, the greedy ensemble, the served model's requests."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline import champion, report, serving
from pipeline.config import load_params
from pipeline.errors import DataError
from pipeline.stages import report as report_stage


def answers(labels: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Probabilities that are sure (0.9) of the true label where `right`; elsewhere they lean
    to label + 1 (0.5) and keep 0.4 on the truth: a mistake another model can outvote."""
    probabilities = np.full((len(labels), 10), 0.1 / 9)
    rows = np.arange(len(labels))
    probabilities[rows, labels] = np.where(right, 0.9, 0.4)
    probabilities[rows, (labels + 1) % 10] = np.where(right, 0.1 / 9, 0.5)
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def test_greedy_ensemble_combines_models_that_err_on_different_images() -> None:
    index = np.arange(300)
    labels = index % 10
    validation = {
        "a": answers(labels, index >= 100),  # misses the first third
        "b": answers(labels, (index < 100) | (index >= 200)),  # misses the second third
        "c": answers(labels, index % 2 == 0),
        "never": answers(labels, np.zeros(300, bool)),
    }
    weights = champion.greedy_ensemble(validation, labels, rounds=10)
    assert set(weights) == {"a", "b"} and sum(weights.values()) == 10
    best_single = max((p.argmax(1) == labels).mean() for p in validation.values())
    blended = champion.blend(validation, weights)
    assert best_single == pytest.approx(2 / 3)
    assert (blended.argmax(1) == labels).mean() == 1.0


def test_greedy_ensemble_of_one_round_is_the_best_single_model() -> None:
    labels = np.arange(50) % 10
    validation = {
        "weak": answers(labels, np.arange(50) < 25),
        "strong": answers(labels, np.arange(50) < 45),
    }
    assert champion.greedy_ensemble(validation, labels, rounds=1) == {"strong": 1}


def table(rows: list[tuple[str, float, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["model", "val_accuracy", "test_accuracy", "parameters"])


def test_champion_is_the_best_on_validation_even_when_another_is_better_on_test() -> None:
    rows = table([("test_winner", 0.97, 0.99, 1000), ("val_winner", 0.98, 0.95, 1000)])
    assert champion.choose(rows) == "val_winner"
    assert report.champion(rows) == "val_winner"


def test_champion_tie_goes_to_fewer_parameters_then_table_order() -> None:
    rows = table([("big", 0.98, 0.99, 5000), ("small", 0.98, 0.90, 100), ("late", 0.98, 0.9, 100)])
    assert champion.choose(rows) == "small"
    assert champion.choose(table([("none", float("nan"), 0.9, 1)])) is None


def test_report_gives_the_chooser_validation_arrays_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ensemble's members are chosen without test labels: by construction, the chooser is
    handed the validation probabilities and labels, never the test ones."""
    rng = np.random.default_rng(0)
    stored = {
        name: {
            "validation": rng.dirichlet(np.ones(10), 40),
            "test": rng.dirichlet(np.ones(10), 60),
            "y_validation": np.arange(40) % 10,
            "y_test": np.arange(60) % 10,
        }
        for name in ("m1", "m2")
    }
    seen = []
    original = champion.greedy_ensemble

    def recording(validation, labels, rounds):
        seen.append((validation, labels, rounds))
        return original(validation, labels, rounds)

    monkeypatch.setattr(champion, "greedy_ensemble", recording)
    result = report_stage._ensemble(load_params(), stored)
    [(validation, labels, rounds)] = seen
    assert rounds == load_params().ensemble.rounds
    assert labels is stored["m1"]["y_validation"]
    assert set(validation) == {"m1", "m2"}
    for name, array in validation.items():
        assert array is stored[name]["validation"]
    assert result["test_table"]["support"].sum() == 60  # the test split is scored, afterwards
    assert result["validation_table"]["support"].sum() == 40


def test_the_ensemble_draws_the_figures_a_model_has() -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 10
    stored = {
        name: {
            "validation": answers(labels[:40], rng.random(40) < 0.7),
            "test": answers(labels, rng.random(60) < 0.7),
            "y_validation": labels[:40],
            "y_test": labels,
        }
        for name in ("m1", "m2")
    }
    params = load_params()
    result = report_stage._ensemble(params, stored)
    figures = report_stage._ensemble_figures(params, result, rng.random((60, 28, 28, 1)))
    assert {path.name for path in figures} == {
        "confusion.png",
        "confusion_validation.png",
        "confusion_errors.png",
        "misclassified.png",
    }
    assert {path.parent.name for path in figures} == {champion.ENSEMBLE}
    grid = next(figure for path, figure in figures.items() if path.name == "misclassified.png")
    mistakes = int((result["test_probabilities"].argmax(axis=1) != labels).sum())
    [mosaic] = grid.axes  # one image, one label text per digit
    assert len(mosaic.texts) == min(mistakes, params.evaluate.grid_size) > 0


@pytest.mark.parametrize(
    ("experiment", "changed", "alias"),
    [
        ("gummy bear", [], "exp-gummy-bear"),  # an experiment never moves @champion
        ("", [], "champion"),
        ("", ["params.yaml"], "workspace"),
    ],
)
def test_only_a_committed_workspace_moves_the_champion(
    monkeypatch: pytest.MonkeyPatch, experiment: str, changed: list[str], alias: str
) -> None:
    monkeypatch.setenv("DVC_EXP_NAME", experiment)
    monkeypatch.setattr(report_stage.provenance, "uncommitted_sources", lambda: changed)
    assert report_stage._alias() == alias


def test_ensemble_row_sits_in_the_table_and_the_report_names_the_rule() -> None:
    base = pd.DataFrame(
        [
            {"model": "a", "kind": "cnn", "source": "A", "parameters": 10, "epochs": 1,
             "train_seconds": 2.0, "val_accuracy": 0.9, "test_accuracy": 0.91, "target": 0.5,
             "meets_target": True, "reported": 0.9, "worst_digit": 1,
             "worst_digit_accuracy": 0.8, "top_confusion": "1->7 (2)", "status": "ok"},
            {"model": "b", "kind": "mlp", "source": "B", "parameters": 20, "epochs": 1,
             "train_seconds": 3.0, "val_accuracy": 0.8, "test_accuracy": 0.95, "target": 0.5,
             "meets_target": True, "reported": 0.9, "worst_digit": 2,
             "worst_digit_accuracy": 0.7, "top_confusion": "2->7 (2)", "status": "ok"},
        ]
    )  # fmt: skip
    scores = {"val_accuracy": 0.93, "val_accuracy_low": 0.92, "val_accuracy_high": 0.94,
              "test_accuracy": 0.94, "test_accuracy_low": 0.93, "test_accuracy_high": 0.95,
              "test_worst_digit": 3, "test_worst_digit_accuracy": 0.9,
              "test_top_confusion": "3->5 (1)"}  # fmt: skip
    row = report.ensemble_row({"a": 3, "b": 1}, base, scores, scores)
    assert row["parameters"] == 30 and row["source"] == "a×3 + b×1"
    full = pd.concat([base, pd.DataFrame([row])], ignore_index=True)
    assert report.champion(full) == champion.ENSEMBLE
    text = report.markdown_report(full, {}, "now", "here", report.champion(full))
    assert "| ensemble" in text and "chosen on the validation split" in text
    assert (
        text.count(
            "test accuracy 94.00% against 91.00% for the best single model on validation, a"
        )
        == 1
    )
    assert "val acc" in text and "test acc" in text
    assert "94.00% (93.00–95.00)" in text  # the ensemble's test accuracy and its interval
    results = report.results_markdown(full, "now", "here", report.champion(full))
    assert results.startswith("Measured now on here.")
    assert "top confusion" in text and "top confusion" not in results  # report.md has them all
    assert "Champion: **ensemble**, chosen on the validation split" in results
    assert "test accuracy 94.00% against 91.00%" in results


# ---------------------------------------------------------------------------- serving requests


def encoded(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def bar() -> np.ndarray:
    """A vertical bar, dark on white, 40x40."""
    pixels = np.full((40, 40), 255, np.uint8)
    pixels[5:35, 17:23] = 0
    return pixels


def test_request_rows_of_every_form_become_the_same_digit() -> None:
    pixels = bar()
    rgb = np.stack([pixels, pixels, np.full_like(pixels, 200)], axis=-1)
    rows = [
        {"image": encoded(Image.fromarray(pixels))},
        {"image": encoded(Image.fromarray(255 - pixels))},  # light on dark
        {"image": encoded(Image.fromarray(rgb), "JPEG")},
        {"pixels": pixels.tolist()},
        {"pixels": rgb.tolist(), "image": None},
    ]
    digits = serving.images(pd.DataFrame(rows))
    assert digits.shape == (5, 28, 28)
    np.testing.assert_allclose(digits[1], digits[0], atol=1e-6)  # lossless: the same digit
    np.testing.assert_allclose(digits[3], digits[0], atol=1e-6)
    for coloured in (digits[2], digits[4]):  # JPEG and tinted paper: close, not equal
        assert np.abs(coloured - digits[0]).mean() < 0.05


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"image": "not base64!"}, "row 0: `image` is not base64"),
        ({"image": base64.b64encode(b"text").decode()}, "row 0: `image`: not an image"),
        (
            {"pixels": [[300, 0], [0, 0]]},
            "row 0: `pixels`: pixels must be finite numbers in 0-255",
        ),
        ({"pixels": np.full((28, 28), 255).tolist()}, "row 0: no digit found"),
        ({}, "row 0: give `image`"),
    ],
)
def test_bad_request_rows_are_one_line_naming_the_row(row: dict, reason: str) -> None:
    with pytest.raises(DataError, match=reason):
        serving.images([row])


class Constant:
    """A member that answers one fixed probability row for every image."""

    input_shape = (None, 28, 28, 1)  # as a Keras model's: the reader sizes images by it

    def __init__(self, row: list[float]) -> None:
        self.row = np.array(row)

    def predict(self, batch: np.ndarray, **options: object) -> np.ndarray:
        return np.tile(self.row, (len(batch), 1))


def test_reader_averages_members_by_weight() -> None:
    sure_three = [0.0] * 10
    sure_three[3] = 1.0
    sure_five = [0.0] * 10
    sure_five[5] = 1.0
    reader = serving.DigitReader(
        {"three": Constant(sure_three), "five": Constant(sure_five)},
        {"three": 3, "five": 1},
        mean=0.0,
        std=1.0,
    )
    answer = reader.predict([{"pixels": bar().tolist()}])
    assert answer["digit"].tolist() == [3]
    assert answer["probabilities"][0][3] == pytest.approx(0.75)
    assert answer["probabilities"][0][5] == pytest.approx(0.25)


def test_input_example_is_a_png_of_the_digit(tmp_path: Path) -> None:
    digit = np.zeros((28, 28), np.float32)
    digit[4:24, 12:16] = 1.0
    data = base64.b64decode(serving.png_base64(digit))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.size == (28, 28)
        assert np.asarray(image)[0, 0] == 255 and np.asarray(image)[10, 13] == 0


def test_validation_metrics_get_names_apart_from_the_training_curve() -> None:
    named = champion.tracking_names({"val_accuracy": 0.9, "test_accuracy": 0.8, "val_loss": 0.1})
    assert named == {"validation_accuracy": 0.9, "test_accuracy": 0.8, "validation_loss": 0.1}
