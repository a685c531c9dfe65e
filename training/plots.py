"""Plot the training history to PNG files: python -m training.plots.

A separate step from `python -m training.export`, which writes history.json:
matplotlib costs about 0.3 s to import and the export has a 5 s budget.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.config import config_from_env
from training.figures import draw_curves, new_figure
from training.history import HISTORY_FILENAME, EpochRecord, load_history

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


def main() -> int:
    """Entry point of `python -m training.plots` (after `python -m training.export`)."""
    output_dir = config_from_env().output_path
    history_path = output_dir / HISTORY_FILENAME
    if not history_path.is_file():
        print(
            f"no {history_path}: run `python -m training.export` first",
            file=sys.stderr,
        )
        return 1
    for path in plot_history(load_history(history_path), output_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
