import dataclasses
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from training.config import TrainConfig, config_from_env
from training.data import load_splits, make_train_loader
from training.model import build_model
from training.optim import OneCycle, OneCycleAdamW
from training.train import (
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
    train,
    train_one_epoch,
)


def test_loss_decreases_over_a_few_batches():
    splits = load_splits(seed=0, test_fraction=0.2)
    model = build_model(seed=0)
    loss_before, _ = evaluate(model, splits.x_train, splits.y_train)
    loader = make_train_loader(splits.x_train, splits.y_train, 64, seed=0)
    optimizer = OneCycleAdamW(model.parameters(), OneCycle(0.01, len(loader)), 0.0)
    train_one_epoch(model, loader, optimizer)
    loss_after, accuracy = evaluate(model, splits.x_train, splits.y_train)
    assert loss_after < loss_before * 0.7
    assert accuracy > 0.5


def test_training_reports_one_line_per_epoch_and_is_reproducible():
    config = TrainConfig(epochs=3)
    lines: list[str] = []
    first = train(config, progress=lines.append)
    second = train(config)
    assert len(lines) == 3 and lines[0].startswith("epoch  1/3")
    assert [r.test_accuracy for r in first.history] == [
        r.test_accuracy for r in second.history
    ]
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name])


def test_env_overrides_reach_the_config(monkeypatch):
    monkeypatch.setenv("TRAIN_EPOCHS", "3")
    monkeypatch.setenv("TRAIN_MAX_LEARNING_RATE", "0.05")
    config = config_from_env()
    assert config.epochs == 3 and config.max_learning_rate == 0.05
    assert config.seed == TrainConfig().seed


def test_bad_env_override_names_the_variable(monkeypatch):
    monkeypatch.setenv("TRAIN_EPOCHS", "many")
    with pytest.raises(ValueError, match="TRAIN_EPOCHS='many'"):
        config_from_env()


def test_checkpoint_is_reused_only_for_the_same_config(tmp_path):
    config = TrainConfig(epochs=1, output_dir=str(tmp_path))
    result = train(config)
    result.temperature = 0.5
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(result, path)
    reused = load_checkpoint(config, path)
    assert reused is not None and reused.temperature == 0.5
    assert torch.equal(
        reused.model.state_dict()["layers.1.weight"],
        result.model.state_dict()["layers.1.weight"],
    )
    assert load_checkpoint(dataclasses.replace(config, seed=1), path) is None
    path.write_bytes(b"not a checkpoint")
    assert load_checkpoint(config, path) is None


def test_digest_changes_with_the_training_code(tmp_path, monkeypatch):
    import shutil

    import training.config

    for name in training.config.WEIGHT_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(training.config.REPO_ROOT / name, tmp_path / name)
    monkeypatch.setattr(training.config, "REPO_ROOT", tmp_path)
    config = TrainConfig()
    before = config.digest()
    assert TrainConfig().digest() == before
    with open(tmp_path / "training" / "train.py", "a") as source:
        source.write("\n# a change to the training loop\n")
    assert config.digest() != before
    assert dataclasses.replace(config, epochs=3).digest() != config.digest()


def test_checkpoint_of_another_architecture_is_retrained(tmp_path):
    config = TrainConfig(epochs=1)
    result = train(config)
    result.model.layers[1] = torch.nn.Linear(64, 32)  # a different shape
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(result, path)
    assert load_checkpoint(config, path) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("test_fraction", 1.0),
        ("max_learning_rate", 0.0),
        ("label_smoothing", 1.0),
        ("shift_fraction", 1.5),
        ("calibration_folds", 1),
    ],
)
def test_impossible_configs_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_training_never_imports_the_torch_compiler():
    # torch.optim would import torch._dynamo (about 0.9 s): the export budget is 5 s.
    code = (
        "import sys\n"
        "from training.config import TrainConfig\n"
        "from training.data import load_digit_arrays\n"
        "from training.train import fit\n"
        "features, labels = load_digit_arrays()\n"
        "fit(TrainConfig(epochs=1), features[:128], labels[:128])\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "assert 'matplotlib' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


@pytest.mark.parametrize(
    ("field", "value"), [("shift_fraction", 0.0), ("label_smoothing", 0.0)]
)
def test_shifts_and_label_smoothing_change_the_trained_weights(field, value):
    splits = load_splits(seed=0, test_fraction=0.2)
    config = TrainConfig(epochs=1)
    features, labels = splits.x_train[:256], splits.y_train[:256]
    recipe = fit(config, features, labels)
    without = fit(dataclasses.replace(config, **{field: value}), features, labels)
    assert not torch.equal(recipe.layers[1].weight, without.layers[1].weight)
