import argparse

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


def test_table_reports_each_seed_and_the_verdict(monkeypatch, capsys):
    monkeypatch.setenv("TRAIN_EPOCHS", "2")
    status = main(["--seeds", "0,1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["seed", "test", "accuracy"]
    assert [line.split()[0] for line in lines[1:3]] == ["0", "1"]
    assert lines[-1].startswith("target:") and lines[-1].endswith("NOT met")
    assert status == 1  # two epochs cannot reach the bar


def test_bad_training_env_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("TRAIN_EPOCHS", "0")
    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0"])
    assert exit_info.value.code == 2
