"""Load the scikit-learn digits and split them into seeded train/test sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from contract import INPUT_SIZE


@dataclass(frozen=True)
class Splits:
    """Raw pixels (0..16, float32) and integer labels of both splits."""

    x_train: np.ndarray  # (n_train, 64) float32
    y_train: np.ndarray  # (n_train,) int64
    x_test: np.ndarray  # (n_test, 64) float32
    y_test: np.ndarray  # (n_test,) int64


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return all 1797 digits as (n, 64) float32 raw pixels and (n,) int64 labels."""
    digits = load_digits()
    # `data` is already the row-major flattening of the 8x8 `images`.
    features = digits.data.astype(np.float32).reshape(-1, INPUT_SIZE)
    labels = digits.target.astype(np.int64)
    return features, labels


def load_splits(seed: int, test_fraction: float) -> Splits:
    """Split the digits into stratified train and test sets, reproducibly."""
    features, labels = load_digit_arrays()
    x_train, x_test, y_train, y_test = train_test_split(
        features,
        labels,
        test_size=test_fraction,
        stratify=labels,
        random_state=seed,
    )
    return Splits(x_train, y_train, x_test, y_test)


def make_train_loader(
    features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> DataLoader:
    """Wrap the training split in a shuffling DataLoader with its own seeded RNG."""
    dataset = TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))
    generator = torch.Generator().manual_seed(seed)
    # Sample whole batches of indices and let TensorDataset slice them in one go:
    # the default per-row fetch and collate costs more than the MLP's own step.
    batches = BatchSampler(
        RandomSampler(dataset, generator=generator), batch_size, drop_last=False
    )
    return DataLoader(dataset, sampler=batches, batch_size=None)
