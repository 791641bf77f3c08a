"""Each plot returns a Figure that draws under the Agg backend, with the expected axes and text."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import QuadMesh
from matplotlib.colors import same_color
from matplotlib.figure import Figure
from matplotlib.text import Text

from pipeline import plots

MODELS = ["mlp_small", "cnn_small", "cnn_wide"]


def render(figure: Figure) -> Figure:
    """Draw `figure` on an Agg canvas (no display needed) and check something was painted."""
    assert isinstance(figure, Figure)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())
    assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 1, "the figure is blank"
    return figure


def history(epochs: int = 4, offset: float = 0.0) -> pd.DataFrame:
    """A Keras-like history table."""
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame(
        {
            "epoch": epoch,
            "loss": 1.0 / epoch,
            "accuracy": 0.9 + 0.01 * epoch,
            "val_loss": 1.2 / epoch,
            "val_accuracy": 0.88 + 0.01 * epoch + offset,
        }
    )


def annotations(axes) -> dict[tuple[int, int], Text]:
    """Heatmap annotations keyed by their (row, column) cell."""
    return {
        (int(text.get_position()[1]), int(text.get_position()[0])): text for text in axes.texts
    }


def annotation_cells(axes) -> dict[tuple[int, int], str]:
    """Heatmap annotation strings keyed by their (row, column) cell."""
    return {cell: text.get_text() for cell, text in annotations(axes).items()}


def test_figures_stay_out_of_pyplot():
    before = plt.get_fignums()
    plots.confusion_figure(np.eye(3, dtype=int), "cm")
    plots.digit_grid(np.zeros((2, 28, 28)), [1, 2], [1, 3], [0.9, 0.8], "grid")

    assert plt.get_fignums() == before  # nothing for the caller to close, nothing leaks


# history_figure


def test_history_figure_has_loss_and_accuracy_panels_train_and_validation():
    data = history()
    figure = render(plots.history_figure(data))

    loss_axes, accuracy_axes = figure.axes
    assert [loss_axes.get_title(), accuracy_axes.get_title()] == ["loss", "accuracy"]
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        train, validation = axes.get_lines()
        np.testing.assert_allclose(train.get_ydata(), data[metric])
        np.testing.assert_allclose(validation.get_ydata(), data[f"val_{metric}"])
        assert [t.get_text() for t in axes.get_legend().get_texts()] == ["train", "validation"]
        assert axes.get_xlabel() == "epoch"


def test_history_figure_without_validation_draws_train_only():
    figure = render(plots.history_figure(history()[["epoch", "loss", "accuracy"]]))

    assert [len(axes.get_lines()) for axes in figure.axes] == [1, 1]


def test_history_figure_copes_with_nan_and_a_single_epoch():
    data = history(epochs=3)
    data.loc[1, "val_loss"] = np.nan
    render(plots.history_figure(data))
    render(plots.history_figure(history(epochs=1)))


def test_history_figure_names_missing_columns():
    with pytest.raises(ValueError, match="missing column\\(s\\) \\['loss'\\]"):
        plots.history_figure(pd.DataFrame({"epoch": [1], "accuracy": [0.9]}))


# confusion_figure

CM = np.array([[50, 2, 3], [1, 40, 0], [4, 5, 30]])


def test_confusion_figure_annotates_every_cell_with_its_count():
    figure = render(plots.confusion_figure(CM, "cnn_small: test"))

    heatmap, colorbar = figure.axes
    assert heatmap.get_title() == "cnn_small: test"
    assert heatmap.get_xlabel() == "predicted"
    assert heatmap.get_ylabel() == "true"
    assert [label.get_text() for label in heatmap.get_xticklabels()] == ["0", "1", "2"]
    assert [label.get_text() for label in heatmap.get_yticklabels()] == ["0", "1", "2"]
    cells = annotation_cells(heatmap)
    assert cells == {
        (row, column): str(CM[row, column]) for row in range(3) for column in range(3)
    }


def test_confusion_figure_writes_white_on_dark_cells_and_dark_on_light_ones():
    figure = render(plots.confusion_figure(CM, "contrast"))

    colours = {cell: text.get_color() for cell, text in annotations(figure.axes[0]).items()}
    assert same_color(colours[(0, 0)], "white")  # 50, the darkest blue
    assert same_color(colours[(1, 2)], "0.15")  # 0, the lightest


def test_confusion_figure_hide_diagonal_masks_the_correct_cells():
    figure = render(plots.confusion_figure(CM, "errors", hide_diagonal=True))

    heatmap = figure.axes[0]
    cells = annotation_cells(heatmap)
    assert len(cells) == 6
    assert all(row != column for row, column in cells)
    assert cells[(2, 1)] == "5"
    (mesh,) = [c for c in heatmap.collections if isinstance(c, QuadMesh)]
    mask = np.ma.getmaskarray(mesh.get_array()).reshape(3, 3)
    np.testing.assert_array_equal(mask, np.eye(3, dtype=bool))


def test_confusion_figure_hidden_diagonal_of_a_perfect_classifier():
    figure = render(plots.confusion_figure(np.diag(np.full(10, 100)), "perfect", True))

    cells = annotation_cells(figure.axes[0])
    assert len(cells) == 90
    assert set(cells.values()) == {"0"}


def test_confusion_figure_shows_fractions_and_skips_nan():
    normalised = np.array([[0.9, 0.1], [np.nan, 0.75]])
    figure = render(plots.confusion_figure(normalised, "normalised"))

    assert annotation_cells(figure.axes[0]) == {(0, 0): "0.90", (0, 1): "0.10", (1, 1): "0.75"}


@pytest.mark.parametrize("cm", [np.zeros((2, 3), dtype=int), np.zeros((0, 0), dtype=int)])
def test_confusion_figure_rejects_a_non_square_or_empty_matrix(cm):
    with pytest.raises(ValueError, match="square and non-empty"):
        plots.confusion_figure(cm, "bad")


# digit_grid


def digits(count: int) -> np.ndarray:
    return np.random.default_rng(0).random((count, 28, 28))


def grid_labels(figure: Figure) -> list:
    (axes,) = figure.axes  # one image of all digits
    return axes.texts


def test_digit_grid_labels_each_digit_and_colours_mistakes_red():
    true = np.array([3, 1, 7, 2, 9, 0, 4])
    pred = np.array([5, 1, 1, 2, 4, 0, 9])
    confidence = np.array([0.97, 0.5, 0.123, 1.0, 0.66, 0.9, 0.8])
    figure = render(plots.digit_grid(digits(7), true, pred, confidence, "mistakes", columns=3))

    assert figure.get_suptitle() == "mistakes"
    labels = grid_labels(figure)
    assert [label.get_text() for label in labels[:3]] == [
        "true 3 / pred 5 (97%)",
        "true 1 / pred 1 (50%)",
        "true 7 / pred 1 (12%)",
    ]
    wrong = [same_color(label.get_color(), plots.WRONG_COLOR) for label in labels]
    assert wrong == [True, False, True, False, True, False, True]
    # row by row, three to a row: columns at three x positions, rows at three y positions
    positions = [label.get_position() for label in labels]
    assert [x for x, _ in positions[:3]] == [x for x, _ in positions[3:6]]
    assert positions[6][0] == positions[0][0]
    assert len({y for _, y in positions}) == 3
    assert positions[0][1] < positions[3][1] < positions[6][1]  # image rows grow downwards


def test_digit_grid_draws_every_digit_on_its_own_grey_scale():
    images = digits(7) * np.arange(1, 8)[:, None, None] - 3.0  # different ranges per digit
    figure = render(plots.digit_grid(images, [0] * 7, [0] * 7, [1.0] * 7, "t", columns=3))

    (axes,) = figure.axes
    mosaic = np.ma.filled(axes.get_images()[0].get_array(), np.nan)
    drawn = np.sort(mosaic[~np.isnan(mosaic)])
    low = images.min(axis=(1, 2), keepdims=True)
    high = images.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(drawn, np.sort(((images - low) / (high - low)).ravel()))


def test_digit_grid_accepts_a_channel_axis():
    figure = render(plots.digit_grid(digits(2)[..., None], [1, 2], [2, 1], [0.5, 0.6], "t"))

    assert len(grid_labels(figure)) == 2
    mosaic = np.ma.filled(figure.axes[0].get_images()[0].get_array(), np.nan)
    assert np.count_nonzero(~np.isnan(mosaic)) == 2 * 28 * 28


def test_digit_grid_of_nothing_says_so():
    figure = render(plots.digit_grid(np.zeros((0, 28, 28)), [], [], [], "mistakes"))

    (axes,) = figure.axes
    assert [text.get_text() for text in axes.texts] == [plots.NO_MISCLASSIFIED]
    assert axes.get_title() == "mistakes"


def test_digit_grid_shows_unknown_confidence_as_na():
    figure = render(plots.digit_grid(digits(1), [3], [5], [np.nan], "t"))

    assert [label.get_text() for label in grid_labels(figure)] == ["true 3 / pred 5 (n/a)"]


@pytest.mark.parametrize(
    ("images", "true", "message"),
    [
        (np.zeros((2, 28)), [1, 2], "images must have shape"),
        (np.zeros((2, 28, 28)), [1], "must have one length, got 2, 1, 2 and 2"),
    ],
)
def test_digit_grid_rejects_inconsistent_input(images, true, message):
    with pytest.raises(ValueError, match=message):
        plots.digit_grid(images, true, [1, 2], [0.5, 0.5], "t")


# per_digit_heatmap


def accuracy_table(models: list[str]) -> pd.DataFrame:
    values = np.linspace(0.95, 0.999, len(models) * 10).reshape(len(models), 10)
    return pd.DataFrame(values, index=models, columns=range(10))


def test_per_digit_heatmap_annotates_percentages_with_models_as_rows():
    table = accuracy_table(MODELS)
    table.loc["cnn_small", 4] = 0.9912
    figure = render(plots.per_digit_heatmap(table))

    heatmap, _colorbar = figure.axes
    cells = annotation_cells(heatmap)
    assert len(cells) == 30
    assert cells[(1, 4)] == "99.1"
    assert [label.get_text() for label in heatmap.get_yticklabels()] == MODELS
    assert [label.get_text() for label in heatmap.get_xticklabels()] == [str(d) for d in range(10)]
    assert heatmap.get_xlabel() == "digit"


def test_per_digit_heatmap_single_model_and_nan_cell():
    table = accuracy_table(["only"])
    table.loc["only", 3] = np.nan
    figure = render(plots.per_digit_heatmap(table))

    cells = annotation_cells(figure.axes[0])
    assert len(cells) == 9
    assert (0, 3) not in cells


@pytest.mark.parametrize(
    "table",
    [pd.DataFrame(), pd.DataFrame(np.full((2, 10), np.nan), index=["a", "b"])],
)
def test_per_digit_heatmap_without_data_says_so(table):
    figure = render(plots.per_digit_heatmap(table))

    (axes,) = figure.axes
    assert [text.get_text() for text in axes.texts] == ["no per-digit accuracy to show"]


# accuracy_vs_params


def test_accuracy_vs_params_labels_each_point_on_a_log_axis():
    frame = pd.DataFrame(
        {
            "model": MODELS,
            "parameters": [101_770, 93_322, 2_774_410],
            "test_accuracy": [0.97, 0.99, 0.992],
        }
    )
    figure = render(plots.accuracy_vs_params(frame))

    (axes,) = figure.axes
    assert axes.get_xscale() == "log"
    assert [text.get_text() for text in axes.texts] == MODELS
    np.testing.assert_allclose(
        axes.collections[0].get_offsets(), frame[["parameters", "test_accuracy"]]
    )


def test_accuracy_vs_params_single_model_and_unplottable_rows():
    frame = pd.DataFrame(
        {
            "model": ["good", "no_accuracy", "no_parameters"],
            "parameters": [1000, 2000, 0],
            "test_accuracy": [0.9, np.nan, 0.8],
        }
    )
    figure = render(plots.accuracy_vs_params(frame))

    assert [text.get_text() for text in figure.axes[0].texts] == ["good"]


def test_accuracy_vs_params_with_nothing_plottable_says_so():
    frame = pd.DataFrame({"model": ["a"], "parameters": [np.nan], "test_accuracy": [0.9]})
    figure = render(plots.accuracy_vs_params(frame))

    assert "no model" in figure.axes[0].texts[0].get_text()


def test_accuracy_vs_params_names_missing_columns():
    with pytest.raises(ValueError, match="missing column\\(s\\) \\['test_accuracy'\\]"):
        plots.accuracy_vs_params(pd.DataFrame({"model": ["a"], "parameters": [1]}))


# curves_overlay


def test_curves_overlay_draws_one_labelled_line_per_model():
    histories = {name: history(offset=0.01 * i) for i, name in enumerate(MODELS)}
    figure = render(plots.curves_overlay(histories))

    (axes,) = figure.axes
    lines = axes.get_lines()
    assert [line.get_label() for line in lines] == MODELS
    np.testing.assert_allclose(lines[2].get_ydata(), histories["cnn_wide"]["val_accuracy"])
    assert [text.get_text() for text in axes.get_legend().get_texts()] == MODELS
    assert axes.get_ylabel() == "val_accuracy"


def test_curves_overlay_other_column_single_model_with_nan():
    data = history()
    data.loc[2, "val_loss"] = np.nan
    figure = render(plots.curves_overlay({"only": data}, column="val_loss"))

    assert figure.axes[0].get_title() == "val_loss by epoch"
    assert len(figure.axes[0].get_lines()) == 1


def test_curves_overlay_without_histories_says_so():
    figure = render(plots.curves_overlay({}))

    assert figure.axes[0].texts[0].get_text() == "no training histories"


def test_curves_overlay_names_the_model_missing_the_column():
    with pytest.raises(
        ValueError, match="history of 'b' is missing column\\(s\\) \\['val_accuracy'\\]"
    ):
        plots.curves_overlay({"a": history(), "b": history()[["epoch", "loss"]]})
