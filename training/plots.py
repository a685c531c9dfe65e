"""Plot training history to PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

from training.train import EpochRecord  # noqa: E402

LOSS_PLOT_FILENAME = "loss.png"
ACCURACY_PLOT_FILENAME = "accuracy.png"


def plot_curves(
    history: list[EpochRecord], metric: str, ylabel: str, path: Path
) -> None:
    """Plot the train and test curves of `metric` ("loss" or "accuracy") to `path`."""
    epochs = [record.epoch for record in history]
    figure, axes = plt.subplots(figsize=(6, 4))
    for split in ("train", "test"):
        values = [getattr(record, f"{split}_{metric}") for record in history]
        axes.plot(epochs, values, label=split)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    # A fixed creation date keeps the PNG bytes reproducible.
    figure.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(figure)


def plot_history(history: list[EpochRecord], output_dir: Path) -> list[Path]:
    """Write the loss and accuracy curves; return the paths written."""
    loss_path = output_dir / LOSS_PLOT_FILENAME
    accuracy_path = output_dir / ACCURACY_PLOT_FILENAME
    plot_curves(history, "loss", "cross-entropy loss", loss_path)
    plot_curves(history, "accuracy", "accuracy", accuracy_path)
    return [loss_path, accuracy_path]
