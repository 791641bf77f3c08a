"""Training, confusion and comparison figures: arrays or DataFrames in, a Figure out.

Figures are built as `matplotlib.figure.Figure` objects, not through pyplot, so they need no GUI
backend and are never registered in pyplot's global list: nothing is shown or saved here, and a
figure is freed like any other object once the caller has logged or saved it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

NO_MISCLASSIFIED = "no misclassified digits"
TRAIN_COLOR = "tab:blue"
VALIDATION_COLOR = "tab:orange"
WRONG_COLOR = "tab:red"
RIGHT_COLOR = "black"
MASKED_CELL_COLOR = "0.9"
# digit_grid: image pixels per inch, and the room around each digit for its label, in pixels
_GRID_PIXELS_PER_INCH = 18
_LABEL_ROOM = 9
_GAP = 7
_SUPTITLE_INCHES = 0.5


def _message_figure(title: str, message: str, figsize: tuple[float, float] = (6.0, 3.0)) -> Figure:
    """A figure with one blank panel saying `message`, for inputs with nothing to draw."""
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color="0.4")
    axes.set_title(title)
    return figure


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Raise ValueError naming the columns `frame` lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(frame.columns)}")


def _epoch_axis(axes: Axes) -> None:
    """Label the x axis as epochs with whole-number ticks and a light grid."""
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)


def history_figure(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch, training against validation, in two side-by-side panels."""
    _require_columns(history, ("epoch", "loss", "accuracy"), "history")
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axes.plot(history["epoch"], history[metric], "o-", ms=3, color=TRAIN_COLOR, label="train")
        # A fit without a validation split has no val_* columns; draw what there is.
        if f"val_{metric}" in history.columns:
            axes.plot(
                history["epoch"],
                history[f"val_{metric}"],
                "o-",
                ms=3,
                color=VALIDATION_COLOR,
                label="validation",
            )
        axes.set_title(metric)
        axes.set_ylabel(metric)
        _epoch_axis(axes)
        axes.legend()
    return figure


def _heatmap(
    axes: Axes, values: ArrayLike, fmt: str, cmap: str, label: str, **options: object
) -> None:
    """seaborn's annotated heatmap, row 0 on top, with a colour bar; masked and NaN cells blank."""
    import seaborn  # here, not at the top: stages that draw no heatmap skip its import (~1.6 s)

    axes.set_facecolor(MASKED_CELL_COLOR)  # what a masked or NaN cell shows
    seaborn.heatmap(
        values,
        ax=axes,
        annot=True,
        fmt=fmt,
        cmap=cmap,
        linewidths=0.5,
        linecolor="white",
        xticklabels=True,
        yticklabels=True,
        cbar_kws={"label": label, "shrink": 0.8},
        **options,
    )
    axes.tick_params(length=0)
    axes.tick_params(axis="y", labelrotation=0)


def confusion_figure(cm: ArrayLike, title: str, hide_diagonal: bool = False) -> Figure:
    """Annotated heatmap of a confusion matrix; rows true, columns predicted.

    With `hide_diagonal` the correct predictions are masked, so the colour scale spans the errors.
    """
    matrix = np.asarray(cm)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(
            f"confusion matrix must be square and non-empty, got shape {matrix.shape}"
        )
    classes = matrix.shape[0]
    whole_counts = np.issubdtype(matrix.dtype, np.integer) or (
        np.isfinite(matrix).all() and np.all(matrix == np.round(matrix))
    )
    values = matrix.astype(np.int64) if whole_counts else matrix.astype(np.float64)
    side = max(4.0, 0.6 * classes + 2.0)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = figure.add_subplot()
    _heatmap(
        axes,
        values,
        "d" if whole_counts else ".2f",
        cmap="Blues",
        label="count" if whole_counts else "value",
        mask=np.eye(classes, dtype=bool) if hide_diagonal else None,
        square=True,
        annot_kws={"fontsize": 9 if classes >= 10 else 11},
    )
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    return figure


def _digit_title(true: int, predicted: int, confidence: float) -> str:
    """'true 3 / pred 5 (97%)', or '(n/a)' when the confidence is unknown."""
    share = "n/a" if math.isnan(confidence) else f"{confidence:.0%}"
    return f"true {true} / pred {predicted} ({share})"


def _unit_range(image: np.ndarray) -> np.ndarray:
    """`image` scaled to [0, 1] (its own minimum to maximum, as one imshow would grey-scale it)."""
    low, high = float(np.min(image)), float(np.max(image))
    return (image - low) / (high - low) if high > low else np.zeros_like(image, dtype=float)


def digit_grid(
    images: ArrayLike,
    true: ArrayLike,
    pred: ArrayLike,
    confidence: ArrayLike,
    title: str,
    columns: int = 5,
) -> Figure:
    """Grid of digit images, each labelled with its true and predicted label and the model's
    confidence; wrong ones in red. Drawn as one mosaic image in one Axes, labels as its texts."""
    pixels = np.asarray(images)
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 3:
        raise ValueError(f"images must have shape [N, H, W] or [N, H, W, 1], got {pixels.shape}")
    labels_true, labels_pred = np.asarray(true), np.asarray(pred)
    shares = np.asarray(confidence, dtype=np.float64)
    lengths = {len(pixels), len(labels_true), len(labels_pred), len(shares)}
    if len(lengths) != 1:
        raise ValueError(
            f"images, true, pred and confidence must have one length, got {len(pixels)}, "
            f"{len(labels_true)}, {len(labels_pred)} and {len(shares)}"
        )
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    count = len(pixels)
    if count == 0:
        return _message_figure(title, NO_MISCLASSIFIED)

    # 25 small Axes took ~1.5 s to draw and save; the mosaic takes ~0.3 s.
    grid_columns = min(columns, count)
    grid_rows = math.ceil(count / grid_columns)
    height, width = pixels.shape[1:]
    cell_height, cell_width = height + _LABEL_ROOM, width + _GAP
    mosaic = np.full((grid_rows * cell_height, grid_columns * cell_width), np.nan)
    mosaic_inches = mosaic.shape[0] / _GRID_PIXELS_PER_INCH
    figure = Figure(
        figsize=(mosaic.shape[1] / _GRID_PIXELS_PER_INCH, mosaic_inches + _SUPTITLE_INCHES)
    )
    axes = figure.add_axes((0.0, 0.0, 1.0, mosaic_inches / (mosaic_inches + _SUPTITLE_INCHES)))
    for index in range(count):
        row, column = divmod(index, grid_columns)
        top, left = row * cell_height + _LABEL_ROOM, column * cell_width + _GAP // 2
        mosaic[top : top + height, left : left + width] = _unit_range(pixels[index])
        is_wrong = labels_true[index] != labels_pred[index]
        axes.text(
            left + width / 2,
            top - 1,
            _digit_title(int(labels_true[index]), int(labels_pred[index]), float(shares[index])),
            ha="center",
            va="bottom",
            fontsize=9,
            color=WRONG_COLOR if is_wrong else RIGHT_COLOR,
        )
    # The gaps are NaN, which imshow leaves transparent.
    axes.imshow(mosaic, cmap="gray_r", interpolation="nearest", vmin=0.0, vmax=1.0)
    axes.set_axis_off()
    figure.suptitle(title)
    return figure


def per_digit_heatmap(table: pd.DataFrame) -> Figure:
    """Heatmap of per-digit accuracy in percent: one row per model, one column per digit."""
    title = "test accuracy per digit (%)"
    percent = table.astype(np.float64) * 100.0
    if percent.empty or percent.isna().all().all():
        return _message_figure(title, "no per-digit accuracy to show")
    rows, columns = percent.shape
    figure = Figure(figsize=(0.75 * columns + 3.5, 0.5 * rows + 2.0), layout="constrained")
    axes = figure.add_subplot()
    _heatmap(axes, percent, ".1f", cmap="viridis", label="accuracy (%)", annot_kws={"fontsize": 9})
    axes.set_xlabel("digit")
    axes.set_ylabel("model")
    axes.set_title(title)
    return figure


def accuracy_vs_params(models: pd.DataFrame) -> Figure:
    """Test accuracy against parameter count (log scale), each point labelled with its model."""
    _require_columns(models, ("model", "parameters", "test_accuracy"), "model table")
    title = "test accuracy vs parameters"
    parameters = pd.to_numeric(models["parameters"], errors="coerce")
    accuracies = pd.to_numeric(models["test_accuracy"], errors="coerce")
    # A log axis cannot place a missing or non-positive parameter count.
    drawable = parameters.gt(0) & accuracies.notna()
    if not drawable.any():
        return _message_figure(title, "no model has a parameter count and a test accuracy")
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    axes = figure.add_subplot()
    axes.scatter(parameters[drawable], accuracies[drawable], zorder=3)
    counts = parameters[drawable].to_numpy(dtype=np.float64)
    middle = (np.log10(counts.min()) + np.log10(counts.max())) / 2
    for name, count, score in zip(
        models["model"][drawable], counts, accuracies[drawable], strict=True
    ):
        # Labels point inwards, so a long name on the largest model stays inside the axes.
        right_half = np.log10(count) > middle
        axes.annotate(
            str(name),
            (count, score),
            xytext=(-5 if right_half else 5, 5),
            textcoords="offset points",
            ha="right" if right_half else "left",
            fontsize=9,
        )
    axes.set_xscale("log")
    axes.margins(x=0.1, y=0.15)  # room for the labels beside and above the points
    axes.set_xlabel("parameters (log scale)")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3, which="both")
    axes.set_title(title)
    return figure


def curves_overlay(histories: Mapping[str, pd.DataFrame], column: str = "val_accuracy") -> Figure:
    """One line per model of `column` against epoch."""
    title = f"{column} by epoch"
    if not histories:
        return _message_figure(title, "no training histories")
    for name, history in histories.items():
        _require_columns(history, ("epoch", column), f"history of {name!r}")
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for name, history in histories.items():
        axes.plot(history["epoch"], history[column], "o-", ms=3, label=name)
    axes.set_ylabel(column)
    _epoch_axis(axes)
    axes.legend()
    axes.set_title(title)
    return figure
