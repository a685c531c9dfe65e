"""Accuracy and calibration figures of class probabilities; no torch here.

Export, evaluation, the figures and the notebooks all score predictions with
these functions, so every report uses one definition of each figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    precision_recall_fscore_support,
)

from contract import CLASSES

# 15 equal-width confidence bins: the usual setting for ECE (Guo et al. 2017,
# "On Calibration of Modern Neural Networks", https://arxiv.org/abs/1706.04599).
ECE_BINS = 15
# A mistake made with at least this confidence looks certain to a client.
CONFIDENT_THRESHOLD = 0.99


def probabilities_from_logits(
    logits: np.ndarray, temperature: float = 1.0
) -> np.ndarray:
    """Return (n, 10) float64 softmax(logits / temperature) of (n, 10) logits."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Group predictions by top-label confidence into `bins` equal-width bins.

    Returns (bins,) arrays: "count", "confidence" (mean top probability) and
    "accuracy" (share correct); the last two are NaN in empty bins. Bin b holds
    confidences in (b / bins, (b + 1) / bins].
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # ceil(c * bins) - 1 puts c = b / bins in bin b - 1: right-closed bins.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct, bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Return the count-weighted mean |accuracy - confidence| over the bins."""
    table = reliability_bins(probabilities, labels, bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(table["count"][filled] * gaps) / len(labels))


def confident_errors(
    probabilities: np.ndarray,
    labels: np.ndarray,
    threshold: float = CONFIDENT_THRESHOLD,
) -> tuple[int, int]:
    """Return (mistakes with top probability >= threshold, all mistakes)."""
    predicted = probabilities.argmax(axis=1)
    wrong = predicted != labels
    sure = probabilities.max(axis=1) >= threshold
    return int(np.sum(wrong & sure)), int(np.sum(wrong))


@dataclass(frozen=True)
class Scores:
    """How good and how honest (n, 10) probabilities are against (n,) labels."""

    accuracy: float
    nll: float  # mean negative log-likelihood of the true class
    brier: float  # mean squared error of the probability vector, 0..2
    ece: float  # expected calibration error, ECE_BINS bins
    confident_errors: int  # mistakes served with >= CONFIDENT_THRESHOLD
    errors: int

    @property
    def confident_error_share(self) -> float:
        """Share of mistakes served with confidence >= CONFIDENT_THRESHOLD."""
        return self.confident_errors / self.errors if self.errors else 0.0

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields plus the confident-error share."""
        return asdict(self) | {"confident_error_share": self.confident_error_share}


def score(probabilities: np.ndarray, labels: np.ndarray) -> Scores:
    """Score (n, 10) float probabilities against (n,) int labels."""
    predicted = probabilities.argmax(axis=1)
    sure, wrong = confident_errors(probabilities, labels)
    return Scores(
        accuracy=float(accuracy_score(labels, predicted)),
        nll=float(log_loss(labels, probabilities, labels=CLASSES)),
        brier=float(brier_score_loss(labels, probabilities, labels=CLASSES)),
        ece=expected_calibration_error(probabilities, labels),
        confident_errors=sure,
        errors=wrong,
    )


def per_class_report(labels: np.ndarray, predicted: np.ndarray) -> list[dict]:
    """Return precision, recall and support of each class, in class order."""
    precision, recall, _, support = precision_recall_fscore_support(
        labels, predicted, labels=CLASSES, zero_division=0
    )
    return [
        {
            "class": digit,
            "precision": float(precision[digit]),
            "recall": float(recall[digit]),
            "support": int(support[digit]),
        }
        for digit in CLASSES
    ]


def class_confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Return the (10, 10) int confusion matrix, rows true and columns predicted."""
    return confusion_matrix(labels, predicted, labels=CLASSES)


def most_confused_pairs(matrix: np.ndarray, limit: int = 5) -> list[dict[str, int]]:
    """Return the largest off-diagonal cells of `matrix`, largest first.

    Ties keep (true, predicted) order, so the list is the same every run.
    """
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    cells = np.argsort(-off_diagonal, axis=None, kind="stable")[:limit]
    pairs = []
    for true, predicted in zip(*np.unravel_index(cells, matrix.shape), strict=True):
        count = int(off_diagonal[true, predicted])
        if count:
            pairs.append(
                {"true": int(true), "predicted": int(predicted), "count": count}
            )
    return pairs
