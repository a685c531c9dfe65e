import numpy as np
import pytest
from scipy.special import softmax

from contract import NUM_CLASSES
from training.metrics import (
    class_confusion,
    confident_errors,
    expected_calibration_error,
    most_confused_pairs,
    per_class_report,
    probabilities_from_logits,
    reliability_bins,
    score,
)


def random_predictions(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 10) probabilities of varied sharpness and (rows,) labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(rows, NUM_CLASSES)) * rng.uniform(0.5, 6, (rows, 1))
    labels = rng.integers(NUM_CLASSES, size=rows)
    return softmax(logits, axis=1), labels


def reference_ece(probabilities, labels, bins=15) -> float:
    """ECE as Guo et al. write it: loop over (lower, upper] bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    total = 0.0
    for lower, upper in zip(
        np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:], strict=True
    ):
        members = (confidence > lower) & (confidence <= upper)
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.mean() * gap
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_the_reference_loop(seed):
    probabilities, labels = random_predictions(500, seed)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(
        reference_ece(probabilities, labels), abs=1e-12
    )


def test_bins_are_closed_on_the_right():
    probabilities = np.full((2, NUM_CLASSES), 0.0)
    probabilities[0, 0] = 1.0  # confidence 1 goes to the last bin
    probabilities[1, :3] = 1 / 3  # exactly 5/15: the fifth bin, not the sixth
    table = reliability_bins(probabilities, np.array([0, 1]))
    assert table["count"].tolist() == [0, 0, 0, 0, 1] + [0] * 9 + [1]
    assert table["accuracy"][14] == 1.0 and table["accuracy"][4] == 0.0
    assert np.isnan(table["confidence"][0])


def test_perfectly_calibrated_and_overconfident_predictions():
    # 80% sure and right 4 times out of 5: calibrated. 100% sure: ECE = 0.2.
    labels = np.array([0, 0, 0, 0, 1])
    calibrated = np.tile([0.8, 0.2] + [0.0] * 8, (5, 1))
    certain = np.tile([1.0] + [0.0] * 9, (5, 1))
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0)
    assert expected_calibration_error(certain, labels) == pytest.approx(0.2)


def test_scores_against_their_formulas():
    probabilities, labels = random_predictions(300, 5)
    rows = np.arange(len(labels))
    one_hot = np.eye(NUM_CLASSES)[labels]
    scores = score(probabilities, labels)
    assert scores.accuracy == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert scores.nll == pytest.approx(-np.mean(np.log(probabilities[rows, labels])))
    assert scores.brier == pytest.approx(
        np.mean(np.sum((probabilities - one_hot) ** 2, axis=1))
    )
    assert scores.errors == int(np.sum(probabilities.argmax(1) != labels))


def test_confident_errors_count_only_sure_mistakes():
    probabilities = np.zeros((4, NUM_CLASSES))
    probabilities[[0, 1, 2, 3], [1, 1, 2, 3]] = [0.995, 0.98, 0.999, 0.999]
    probabilities[[0, 1, 2, 3], [0, 0, 0, 0]] += 1 - probabilities.max(axis=1)
    labels = np.array([0, 0, 2, 0])  # rows 0, 1, 3 wrong; 0 and 3 sure
    assert confident_errors(probabilities, labels) == (2, 3)
    assert score(probabilities, labels).confident_error_share == pytest.approx(2 / 3)


def test_no_mistakes_means_no_confident_share():
    probabilities = np.eye(NUM_CLASSES)
    assert score(probabilities, np.arange(NUM_CLASSES)).confident_error_share == 0.0


def test_temperature_divides_the_logits():
    logits = np.array([[2.0, 1.0] + [0.0] * 8])
    sharp = probabilities_from_logits(logits, 0.5)
    np.testing.assert_allclose(sharp, softmax(logits * 2, axis=1))
    assert sharp.max() > probabilities_from_logits(logits).max()


def test_per_class_figures_and_confused_pairs():
    labels = np.array([5, 5, 5, 9, 9, 1, 8, 8])
    predicted = np.array([5, 9, 9, 9, 9, 1, 1, 8])
    report = per_class_report(labels, predicted)
    assert [row["class"] for row in report] == list(range(NUM_CLASSES))
    assert report[5] == {"class": 5, "precision": 1.0, "recall": 1 / 3, "support": 3}
    assert report[9]["precision"] == 0.5 and report[0]["support"] == 0
    matrix = class_confusion(labels, predicted)
    assert matrix.sum() == len(labels) and matrix[5, 9] == 2
    assert most_confused_pairs(matrix) == [
        {"true": 5, "predicted": 9, "count": 2},
        {"true": 8, "predicted": 1, "count": 1},
    ]
