"""Fit the softmax temperature on out-of-fold logits of the training split.

The test split never touches the temperature: k models are trained on k - 1
folds of the training split each, every training row gets a logit from the
model that did not see it, and one temperature is fitted to those logits. The
shipped model (trained on the whole training split) is then divided by it.
This is scikit-learn's CalibratedClassifierCV(ensemble=False) recipe, with
temperature scaling as the calibrator.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.model_selection import StratifiedKFold

from contract import NUM_CLASSES
from training.config import TrainConfig
from training.model import predict_logits
from training.train import fit

# The search range of the temperature: far wider than any fit seen here (0.37-1.7).
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def mean_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Return the mean -log softmax(logits / temperature)[label] of (n, 10) logits."""
    log_probabilities = log_softmax(logits.astype(np.float64) / temperature, axis=1)
    return float(-np.mean(log_probabilities[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the temperature that minimises the NLL of (n, 10) logits.

    The NLL is convex in 1 / temperature, so a bounded scalar search finds the
    one minimum. The result is rounded to float32, the precision of the graph.
    """
    search = minimize_scalar(
        lambda inverse: mean_nll(logits, labels, 1.0 / inverse),
        bounds=(1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(np.float32(1.0 / search.x))


def out_of_fold_logits(
    config: TrainConfig, features: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Return (n, 10) float32 logits, each row from a model trained without it.

    `config.calibration_folds` models are trained with `config`, on stratified
    folds shuffled by `config.seed`.
    """
    folds = StratifiedKFold(
        n_splits=config.calibration_folds, shuffle=True, random_state=config.seed
    )
    logits = np.empty((len(labels), NUM_CLASSES), dtype=np.float32)
    for fitted_rows, held_out_rows in folds.split(features, labels):
        model = fit(config, features[fitted_rows], labels[fitted_rows])
        logits[held_out_rows] = predict_logits(model, features[held_out_rows])
    return logits


def calibrate(config: TrainConfig, features: np.ndarray, labels: np.ndarray) -> float:
    """Fit the temperature for a model trained with `config` on these rows."""
    return fit_temperature(out_of_fold_logits(config, features, labels), labels)
