"""Plot training history to PNG files."""

from __future__ import annotations

from pathlib import Path

from training.figures import draw_curves, new_figure
from training.train import EpochRecord

LOSS_PLOT_FILENAME = "loss.png"
ACCURACY_PLOT_FILENAME = "accuracy.png"
PLOT_DPI = 80


def plot_curves(
    history: list[EpochRecord], metric: str, ylabel: str, path: Path
) -> None:
    """Plot the train and test curves of `metric` ("loss" or "accuracy") to `path`."""
    figure = new_figure(6, 4)
    draw_curves(figure.subplots(), history, metric, ylabel)
    # Without the Software entry the PNG bytes do not depend on the matplotlib build.
    figure.savefig(path, dpi=PLOT_DPI, metadata={"Software": None})


def plot_history(history: list[EpochRecord], output_dir: Path) -> list[Path]:
    """Write the loss and accuracy curves; return the paths written."""
    loss_path = output_dir / LOSS_PLOT_FILENAME
    accuracy_path = output_dir / ACCURACY_PLOT_FILENAME
    plot_curves(history, "loss", "cross-entropy loss", loss_path)
    plot_curves(history, "accuracy", "accuracy", accuracy_path)
    return [loss_path, accuracy_path]
