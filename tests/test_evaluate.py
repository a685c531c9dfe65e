import argparse
import json

import pytest

from training.evaluate import main, parse_seeds


@pytest.mark.parametrize(
    ("text", "seeds"), [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2-3,7", [0, 2, 3, 7])]
)
def test_seed_lists_and_ranges_parse(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "4-0", "a-b", "1,,2"])
def test_bad_seed_lists_are_usage_errors(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds(text)


def test_report_is_printed_and_written_for_each_seed(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TRAIN_EPOCHS", "2")
    monkeypatch.setenv("TRAIN_CALIBRATION_FOLDS", "2")
    monkeypatch.setenv("TRAIN_OUTPUT_DIR", str(tmp_path))
    status = main(["--seeds", "0,1"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["seed 0", "seed 1"]
    assert lines[-1].startswith("target:") and lines[-1].endswith("NOT met")
    assert status == 1  # two epochs cannot reach the bar

    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["seeds"] == [0, 1]
    # The pooled confusion matrix holds both test splits (360 digits each).
    assert sum(map(sum, report["confusion_matrix"])) == 720
    assert [row["seed"] for row in report["per_seed"]] == [0, 1]
    for row in report["per_seed"]:
        assert row["temperature"] > 0
        assert row["served"]["accuracy"] == row["unscaled"]["accuracy"]
    assert len(report["per_class"]) == 10
    assert not all(report["targets"].values())
    # The printed report is the written one.
    assert (tmp_path / "evaluation.md").read_text() in out


def test_bad_training_env_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("TRAIN_EPOCHS", "0")
    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0"])
    assert exit_info.value.code == 2
