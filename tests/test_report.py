import json

import numpy as np
import pytest

from training.metrics import Scores
from training.report import (
    TARGET_MEAN_ACCURACY,
    TARGET_MEAN_NLL,
    SeedResult,
    build_report,
    render_text,
    verdict_line,
    write_report,
)


def seed_result(seed: int, accuracy: float, nll: float, ece: float) -> SeedResult:
    served = Scores(accuracy, nll, 0.01, ece, confident_errors=1, errors=2)
    unscaled = Scores(accuracy, 0.15, 0.03, 0.11, confident_errors=0, errors=2)
    return SeedResult(seed, 0.42, served, unscaled)


LABELS = np.array([5, 5, 8, 1, 9, 9])
PREDICTED = np.array([5, 9, 1, 1, 9, 9])


def test_summary_and_targets_follow_the_served_scores():
    good = [seed_result(0, 0.995, 0.02, 0.005), seed_result(1, 0.991, 0.03, 0.01)]
    report = build_report(good, LABELS, PREDICTED)
    assert report["served"]["accuracy"]["mean"] == pytest.approx(0.993)
    assert report["served"]["accuracy"]["min"] == 0.991
    assert report["unscaled"]["nll"]["mean"] == pytest.approx(0.15)
    assert all(report["targets"].values())
    assert verdict_line(report).endswith(": met")
    assert report["confident_errors"] == {
        "threshold": 0.99,
        "count": 2,
        "errors": 4,
        "share": 0.5,
    }

    one_bad = good + [seed_result(2, TARGET_MEAN_ACCURACY - 0.02, 0.03, 0.01)]
    report = build_report(one_bad, LABELS, PREDICTED)
    assert not report["targets"][f"accuracy mean >= {TARGET_MEAN_ACCURACY}"]
    assert report["targets"][f"NLL mean <= {TARGET_MEAN_NLL}"]
    assert verdict_line(report).endswith("NOT met")


def test_text_and_json_carry_the_same_report(tmp_path):
    report = build_report([seed_result(3, 0.99, 0.03, 0.01)], LABELS, PREDICTED)
    paths = write_report(report, tmp_path / "out")
    assert [path.name for path in paths] == ["evaluation.json", "evaluation.md"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(report))
    text = paths[1].read_text()
    assert text == render_text(report)
    assert "| 3 | 0.420 | 0.9900 | 0.0300 |" in text
    assert "- true 5 read as 9: 1" in text and "- true 8 read as 1: 1" in text
    assert "| 9 | 0.6667 | 1.0000 | 2 |" in text  # precision, recall, support
    assert text.rstrip().splitlines()[-1] == verdict_line(report)
