"""The per-epoch training history: records, and history.json on disk.

Kept apart from train.py so that plotting it needs no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HISTORY_FILENAME = "history.json"


@dataclass(frozen=True)
class EpochRecord:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    test_loss: float
    train_accuracy: float
    test_accuracy: float

    def summary(self, epochs: int) -> str:
        """Format the one-line progress report for this epoch."""
        return (
            f"epoch {self.epoch:>2}/{epochs}  loss {self.train_loss:.4f}  "
            f"test loss {self.test_loss:.4f}  train acc {self.train_accuracy:.4f}  "
            f"test acc {self.test_accuracy:.4f}"
        )


def save_history(history: list[EpochRecord], path: Path) -> None:
    """Write the per-epoch metrics as a JSON list."""
    path.write_text(json.dumps([record.__dict__ for record in history], indent=2))


def load_history(path: Path) -> list[EpochRecord]:
    """Read the per-epoch records that save_history wrote to `path`."""
    return [EpochRecord(**record) for record in json.loads(path.read_text())]
