"""Train the MLP: the loop, evaluation, history and checkpoints."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.augment import shift_some
from training.config import TrainConfig
from training.data import Splits, load_splits, make_train_loader
from training.history import EpochRecord
from training.model import DigitsMLP, build_model
from training.optim import OneCycle, OneCycleAdamW

CHECKPOINT_FILENAME = "checkpoint.pt"
# Added to the seed for the augmentation's random stream (any fixed number works).
SHIFT_SEED_OFFSET = 1


@dataclass
class TrainResult:
    """A trained model with the history that produced it."""

    model: DigitsMLP
    config: TrainConfig
    history: list[EpochRecord] = field(default_factory=list)
    # The softmax temperature fitted for this model (1.0 until calibrated).
    temperature: float = 1.0

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy


def evaluate(
    model: nn.Module, features: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """Return (mean cross-entropy, accuracy) of `model` on raw (n, 64) pixels."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(features))
        targets = torch.from_numpy(labels)
        loss = nn.functional.cross_entropy(logits, targets).item()
        accuracy = (logits.argmax(dim=1) == targets).float().mean().item()
    return loss, accuracy


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: OneCycleAdamW,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    label_smoothing: float = 0.0,
) -> float:
    """Run one pass over `loader`; return the mean training loss.

    `augment` maps each (batch, 64) pixel batch to the one the model trains on.
    """
    model.train()
    total_loss, total_rows = 0.0, 0
    for pixels, targets in loader:
        if augment is not None:
            pixels = augment(pixels)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(
            model(pixels), targets, label_smoothing=label_smoothing
        )
        loss.backward()
        optimizer.step()  # the one-cycle schedule moves per batch, not per epoch
        total_loss += loss.item() * len(targets)
        total_rows += len(targets)
    return total_loss / total_rows


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one CPU thread inside the block, then restore the setting.

    The MLP is tiny: one thread trains as fast as two on an idle 2-core machine
    and several times faster on a busy one, and the float sums (so the trained
    weights) no longer depend on how many cores the machine has.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@single_threaded()
def fit(
    config: TrainConfig,
    features: np.ndarray,
    labels: np.ndarray,
    after_epoch: Callable[[int, DigitsMLP], None] | None = None,
) -> DigitsMLP:
    """Train a fresh MLP with `config` on (n, 64) raw pixels and (n,) labels.

    `after_epoch(epoch, model)` runs after each epoch (e.g. to measure it).
    """
    model = build_model(config.seed)
    loader = make_train_loader(features, labels, config.batch_size, config.seed)
    schedule = OneCycle(config.max_learning_rate, config.epochs * len(loader))
    optimizer = OneCycleAdamW(model.parameters(), schedule, config.weight_decay)
    # Its own stream, so the shifts do not move the loader's batch order.
    shifts = torch.Generator().manual_seed(config.seed + SHIFT_SEED_OFFSET)

    def augment(pixels: torch.Tensor) -> torch.Tensor:
        return shift_some(pixels, config.shift_fraction, shifts)

    for epoch in range(1, config.epochs + 1):
        train_one_epoch(model, loader, optimizer, augment, config.label_smoothing)
        if after_epoch:
            after_epoch(epoch, model)
    model.eval()
    return model


def train(
    config: TrainConfig,
    splits: Splits | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a fresh MLP with `config`, reporting one line per epoch to `progress`."""
    splits = splits or load_splits(config.seed, config.test_fraction)
    history: list[EpochRecord] = []

    def measure(epoch: int, model: DigitsMLP) -> None:
        # Re-measure the training loss in eval mode so both curves are comparable.
        train_loss, train_accuracy = evaluate(model, splits.x_train, splits.y_train)
        test_loss, test_accuracy = evaluate(model, splits.x_test, splits.y_test)
        record = EpochRecord(
            epoch, train_loss, test_loss, train_accuracy, test_accuracy
        )
        history.append(record)
        if progress:
            progress(record.summary(config.epochs))

    model = fit(config, splits.x_train, splits.y_train, after_epoch=measure)
    return TrainResult(model=model, config=config, history=history)


def save_checkpoint(result: TrainResult, path: Path) -> None:
    """Write weights, digest, history and temperature for a later export to reuse."""
    torch.save(
        {
            "config": result.config.to_dict(),
            "training_digest": result.config.digest(),
            "state_dict": result.model.state_dict(),
            "history": [record.__dict__ for record in result.history],
            "temperature": result.temperature,
        },
        path,
    )


def load_checkpoint(config: TrainConfig, path: Path) -> TrainResult | None:
    """Return the checkpoint at `path` if this config and code made it, else None."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError):
        return None  # unreadable or from another torch version: retrain
    if saved.get("training_digest") != config.digest() or "temperature" not in saved:
        return None
    model = DigitsMLP()
    try:
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError):
        return None  # weights of another architecture: retrain
    model.eval()
    history = [EpochRecord(**record) for record in saved["history"]]
    return TrainResult(
        model=model,
        config=config,
        history=history,
        temperature=float(saved["temperature"]),
    )
