"""Shared fixtures. Tests never read artifacts/: they export into temp dirs."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from training.config import TrainConfig
from training.data import load_digit_arrays

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(url: str, body: bytes | None = None, content_type="application/json"):
    """Send one request; return (status, parsed JSON body)."""
    headers = {"Content-Type": content_type} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_server(python, env_overrides, log_path):
    """Run `python -m serving` from the repo, output going to `log_path`."""
    env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", **env_overrides}
    with open(log_path, "w") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            [str(python), "-m", "serving"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_until_listening(port: int, process: subprocess.Popen, log_path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        try:
            status, _ = request(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError(f"server did not answer within {START_TIMEOUT_S}s")


@contextmanager
def serving_process(
    onnx_path: Path,
    log_path: Path,
    workers: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen, int]]:
    """Run `python -m serving` from the serve-only venv until ready; stop it after."""
    from tests.serve_env import serve_env_python

    port = free_port()
    process = start_server(
        serve_env_python(),
        {
            "PORT": str(port),
            "SERVE_MODEL_PATH": str(onnx_path),
            "SERVE_WORKERS": str(workers),
            **(extra_env or {}),
        },
        log_path,
    )
    try:
        wait_until_listening(port, process, log_path)
        yield process, port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)


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
