"""Shared fixtures. Tests never read artifacts/: they export into temp dirs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from training.config import TrainConfig
from training.data import load_digit_arrays

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: (n, 64) float32 raw pixels and (n,) int64 labels."""
    return load_digit_arrays()


@pytest.fixture(scope="session")
def train_config(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    """The default training config, writing into a temp directory."""
    output_dir = tmp_path_factory.mktemp("artifacts")
    return dataclasses.replace(TrainConfig(), output_dir=str(output_dir))


@pytest.fixture(scope="session")
def onnx_path(train_config: TrainConfig) -> Path:
    """Run the real export pipeline once per session; return model.onnx."""
    from training.export import run_export

    return run_export(train_config)


@pytest.fixture()
def serve_config(onnx_path: Path):
    from serving.config import ServeConfig

    return ServeConfig(model_path=str(onnx_path))


@pytest.fixture(scope="session")
def predictor(onnx_path: Path):
    from serving.model import Predictor

    return Predictor.load(onnx_path)


@pytest.fixture()
def app(serve_config, predictor):
    from serving.app import create_app

    return create_app(serve_config, predictor=predictor)


@pytest.fixture()
def client(app):
    return app.test_client()
