import numpy as np
import pytest

from contract import NUM_CLASSES
from training.calibration import fit_temperature, mean_nll, out_of_fold_logits
from training.config import TrainConfig
from training.data import load_splits


def logits_drawn_at(temperature: float, rows: int, seed: int):
    """Logits, and labels drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=4.0, size=(rows, NUM_CLASSES))
    scaled = np.exp(logits / temperature - (logits / temperature).max(1, keepdims=1))
    probabilities = scaled / scaled.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(NUM_CLASSES, p=row) for row in probabilities])
    return logits.astype(np.float32), labels


@pytest.mark.parametrize("true_temperature", [0.4, 1.0, 2.5])
def test_fit_recovers_the_temperature_labels_were_drawn_at(true_temperature):
    logits, labels = logits_drawn_at(true_temperature, 4000, seed=1)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    # It is the minimum: a little hotter or colder is worse.
    best = mean_nll(logits, labels, fitted)
    assert best < mean_nll(logits, labels, fitted * 1.05)
    assert best < mean_nll(logits, labels, fitted / 1.05)


@pytest.fixture(scope="module")
def held_out():
    """Out-of-fold logits of a short recipe run (3 epochs, 2 folds), seed 0."""
    config = TrainConfig(epochs=3, calibration_folds=2)
    splits = load_splits(config.seed, config.test_fraction)
    return config, splits, out_of_fold_logits(config, splits.x_train, splits.y_train)


def test_out_of_fold_logits_cover_every_row_reproducibly(held_out):
    config, splits, logits = held_out
    assert logits.shape == (len(splits.y_train), NUM_CLASSES)
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    assert np.mean(logits.argmax(axis=1) == splits.y_train) > 0.8
    again = out_of_fold_logits(config, splits.x_train, splits.y_train)
    np.testing.assert_array_equal(logits, again)


def test_a_temperature_fitted_on_some_rows_lowers_nll_on_others(held_out):
    _, splits, logits = held_out
    half = len(logits) // 2
    temperature = fit_temperature(logits[:half], splits.y_train[:half])
    other_logits, other_labels = logits[half:], splits.y_train[half:]
    assert temperature != pytest.approx(1.0, abs=0.05)
    assert mean_nll(other_logits, other_labels, temperature) < mean_nll(
        other_logits, other_labels, 1.0
    )


def test_fitted_temperature_is_float32_exact(held_out):
    _, splits, logits = held_out
    temperature = fit_temperature(logits, splits.y_train)
    assert float(np.float32(temperature)) == temperature
