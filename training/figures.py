"""Build the figures the notebooks show, as matplotlib Figures.

Figures are made without pyplot: nothing here picks a backend or keeps global
state, so the same code renders inline in Jupyter and to PNG on a headless
server, and callers need not close anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from contract import CLASSES, IMAGE_SHAPE, NUM_CLASSES, PIXEL_MAX, PIXEL_MIN
from training.history import EpochRecord
from training.metrics import ECE_BINS, expected_calibration_error, reliability_bins

# 72 dpi keeps each notebook PNG in the tens of kilobytes.
FIGURE_DPI = 72
# Dark ink on white paper, like the scanned forms the digits come from.
DIGIT_COLORMAP = "gray_r"
DIGIT_INCHES = 1.0  # width and image height of one grid cell
TITLE_LINE_INCHES = 0.2
DEFAULT_GRID_COLUMNS = 10
DEFAULT_MISCLASSIFIED_LIMIT = 20


def new_figure(width: float, height: float) -> Figure:
    """Return an empty white figure of `width` x `height` inches."""
    return Figure(
        figsize=(width, height),
        dpi=FIGURE_DPI,
        facecolor="white",
        layout="constrained",
    )


def draw_curves(
    axes: Axes, history: Sequence[EpochRecord], metric: str, ylabel: str
) -> None:
    """Draw the train and test curves of `metric` ("loss" or "accuracy")."""
    epochs = [record.epoch for record in history]
    for split in ("train", "test"):
        values = [getattr(record, f"{split}_{metric}") for record in history]
        axes.plot(epochs, values, label=split)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()


def history_curves(history: Sequence[EpochRecord]) -> Figure:
    """Plot loss and accuracy per epoch, train and test, side by side."""
    figure = new_figure(10, 3.6)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    draw_curves(loss_axes, history, "loss", "cross-entropy loss")
    draw_curves(accuracy_axes, history, "accuracy", "accuracy")
    return figure


def pixel_histogram(features: np.ndarray) -> Figure:
    """Show the share of each pixel value 0..16 in (n, 64) raw pixels, one bar each."""
    # Bins centred on the integers: a pixel counts the inked cells of a 4x4 block.
    edges = np.arange(PIXEL_MIN, PIXEL_MAX + 2) - 0.5
    values = features.ravel()
    figure = new_figure(6, 3.2)
    axes = figure.subplots()
    weights = np.full(values.shape, 1 / values.size)
    _, _, bars = axes.hist(values, bins=edges, weights=weights, color="tab:blue")
    axes.bar_label(bars, fmt="{:.0%}", fontsize=8)
    axes.set_xticks(np.arange(PIXEL_MIN, PIXEL_MAX + 1, 2))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.set_xlabel("pixel value (0 = background, 16 = full ink)")
    axes.set_ylabel("share of all pixels")
    return figure


def class_balance_chart(labels: np.ndarray) -> Figure:
    """Plot how many of the (n,) int labels fall in each class."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    figure = new_figure(6, 3.2)
    axes = figure.subplots()
    bars = axes.bar(CLASSES, counts, color="tab:blue")
    axes.bar_label(bars, fontsize=8)
    axes.set_xticks(CLASSES)
    axes.set_xlabel("digit")
    axes.set_ylabel("samples")
    axes.set_ylim(0, counts.max() * 1.12)  # headroom for the count labels
    return figure


def digit_grid(
    pixels: np.ndarray, titles: Sequence[str], columns: int = DEFAULT_GRID_COLUMNS
) -> Figure:
    """Draw (n, 64) raw pixels as 8x8 images, row by row, each under its title.

    Every image uses the full 0..16 range, so equal ink looks equal across cells.
    Raises ValueError if `pixels` is empty or `titles` has another length.
    """
    if len(pixels) == 0:
        raise ValueError("digit_grid needs at least one image")
    if len(titles) != len(pixels):
        raise ValueError(f"{len(pixels)} images but {len(titles)} titles")
    columns = min(columns, len(pixels))
    rows = math.ceil(len(pixels) / columns)
    title_lines = max(title.count("\n") + 1 for title in titles)
    cell_height = DIGIT_INCHES + title_lines * TITLE_LINE_INCHES
    figure = new_figure(columns * DIGIT_INCHES, rows * cell_height)
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    # The last row may have spare cells: they stay blank.
    for axes, image, title in zip(grid.flat, pixels, titles, strict=False):
        axes.imshow(
            image.reshape(IMAGE_SHAPE),
            cmap=DIGIT_COLORMAP,
            vmin=PIXEL_MIN,
            vmax=PIXEL_MAX,
        )
        axes.set_title(title, fontsize=9)
    return figure


def class_means(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the (10, 64) float32 mean raw image of each class (NaN if absent)."""
    means = np.full((NUM_CLASSES, features.shape[1]), np.nan, dtype=np.float32)
    for digit in CLASSES:
        members = features[labels == digit]
        if len(members):
            means[digit] = members.mean(axis=0)
    return means


def class_mean_grid(features: np.ndarray, labels: np.ndarray) -> Figure:
    """Draw the mean image of each class, with its sample count."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    titles = [f"{digit} (n={counts[digit]})" for digit in CLASSES]
    return digit_grid(class_means(features, labels), titles)


def confusion_matrix_plot(matrix: np.ndarray) -> Figure:
    """Draw a (10, 10) int confusion matrix (rows true, columns predicted)."""
    figure = new_figure(5.2, 4.6)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    # Light text on dark cells keeps every count readable.
    threshold = matrix.max() / 2
    for (true, predicted), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        axes.text(predicted, true, str(count), ha="center", va="center", color=color)
    axes.set_xticks(CLASSES)
    axes.set_yticks(CLASSES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    return figure


def draw_reliability(
    axes: Axes, probabilities: np.ndarray, labels: np.ndarray, title: str
) -> None:
    """Draw accuracy against confidence per bin, with the diagonal of perfect trust.

    Bars below the diagonal are overconfident bins, bars above it underconfident.
    """
    table = reliability_bins(probabilities, labels)
    width = 1 / ECE_BINS
    centres = (np.arange(ECE_BINS) + 0.5) * width
    filled = table["count"] > 0
    bars = axes.bar(
        centres[filled],
        table["accuracy"][filled],
        width=width,
        edgecolor="black",
        color="tab:blue",
        label="accuracy in bin (digits in it above)",
    )
    # Most digits sit in the last bin: the counts say how much each bar weighs.
    axes.bar_label(bars, labels=table["count"][filled], fontsize=7)
    axes.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ece = expected_calibration_error(probabilities, labels)
    axes.set_title(f"{title}\nECE {ece:.4f}", fontsize=10)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.1)  # room for the counts above full bars
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")


def reliability_diagrams(
    before: np.ndarray, after: np.ndarray, labels: np.ndarray, temperature: float
) -> Figure:
    """Show the reliability of (n, 10) probabilities before and after scaling."""
    figure = new_figure(9, 4)
    left, right = figure.subplots(1, 2)
    draw_reliability(left, before, labels, "before scaling (T = 1)")
    draw_reliability(right, after, labels, f"after scaling (T = {temperature:.3f})")
    # One legend under both panels: inside, it would cover bars on one side or other.
    handles, names = left.get_legend_handles_labels()
    figure.legend(handles, names, loc="outside lower center", ncols=2, fontsize=8)
    return figure


def misclassified_indices(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the rows whose argmax is wrong, most confident mistake first.

    `probabilities` is (n, 10) float, `labels` (n,) int; the result is (k,) int64.
    """
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    # Stable sort: ties keep dataset order, so the grid is the same every run.
    return wrong[np.argsort(-confidence, kind="stable")]


def misclassified_grid(
    pixels: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    limit: int = DEFAULT_MISCLASSIFIED_LIMIT,
) -> Figure:
    """Draw up to `limit` misclassified digits with true and predicted labels."""
    rows = misclassified_indices(probabilities, labels)[:limit]
    if len(rows) == 0:
        figure = new_figure(4, 1)
        figure.text(0.5, 0.5, "no misclassified digits", ha="center", va="center")
        return figure
    predicted = probabilities[rows].argmax(axis=1)
    titles = [
        f"true {labels[row]}\npred {guess}, {probabilities[row, guess]:.0%}"
        for row, guess in zip(rows, predicted, strict=True)
    ]
    return digit_grid(pixels[rows], titles)
