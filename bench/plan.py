"""What the benchmark runs: the servers, as users start them, and the load on each."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.servers import HOST, ServerSpec, predict_probe, readyz_probe
from contract import INPUT_SIZE, PIXEL_MAX, PIXEL_MIN

BATCH_SIZES = (64, 1024)
PREDICT_CONNECTIONS = (1, 8, 32)
# c=1 is one worker against the one-core decode floor; c=2 keeps both busy.
BATCH_CONNECTIONS = (1, 2)
SEED = 0
# training.export writes the checkpoint next to model.onnx.
CHECKPOINT_FILENAME = "checkpoint.pt"
PRODUCTION = "Flask+gunicorn+onnxruntime"
TYPICAL = "FastAPI+torch typical"
TUNED = "FastAPI+torch tuned"


@dataclass(frozen=True)
class LoadRun:
    """One wrk run: which endpoint, which body, how many connections."""

    path: str
    body: str  # key of the body file: "predict", "batch-64", ...
    connections: int
    rows: int = 1

    @property
    def label(self) -> str:
        rows = f" ({self.rows} rows)" if self.rows > 1 else ""
        return f"{self.path}{rows}"


def random_rows(rows: int, rng: random.Random) -> list[list[int]]:
    """Return `rows` images of INPUT_SIZE integer pixels, as clients send them."""
    low, high = int(PIXEL_MIN), int(PIXEL_MAX)
    return [[rng.randint(low, high) for _ in range(INPUT_SIZE)] for _ in range(rows)]


def write_bodies(directory: Path) -> dict[str, Path]:
    """Write the request bodies wrk sends; return {key: path}."""
    rng = random.Random(SEED)
    bodies = {"predict": {"features": random_rows(1, rng)[0]}}
    for rows in BATCH_SIZES:
        bodies[f"batch-{rows}"] = {"instances": random_rows(rows, rng)}
    paths = {}
    for key, body in bodies.items():
        paths[key] = directory / f"{key}.json"
        paths[key].write_text(json.dumps(body, separators=(",", ":")))
    return paths


def production_runs() -> list[LoadRun]:
    """Return the load runs of the production server."""
    runs = [LoadRun("/predict", "predict", c) for c in PREDICT_CONNECTIONS]
    runs += [
        LoadRun("/predict/batch", f"batch-{rows}", c, rows)
        for rows in BATCH_SIZES
        for c in BATCH_CONNECTIONS
    ]
    return runs


def baseline_runs() -> list[LoadRun]:
    """Return the load runs of the baseline: the seed had no batch route."""
    return [LoadRun("/predict", "predict", c) for c in PREDICT_CONNECTIONS]


def production_spec(
    serve_python: str,
    model_path: Path,
    predict_body: bytes,
    overrides: Mapping[str, str],
) -> ServerSpec:
    """`python -m serving` from the serve env, with its default settings."""
    return ServerSpec(
        PRODUCTION,
        [serve_python, "-m", "serving"],
        readyz_probe(predict_body),
        {"SERVE_MODEL_PATH": str(model_path), **overrides},
    )


def baseline_specs(
    train_python: str, checkpoint_path: Path, predict_body: bytes
) -> list[ServerSpec]:
    """The seed's design under uvicorn from the train env: typical, then tuned."""
    uvicorn = [train_python, "-m", "uvicorn", "bench.fastapi_torch:app"]
    uvicorn += ["--host", HOST, "--port", "{port}"]
    # What `pip install fastapi uvicorn` runs: no uvloop or httptools installed.
    typical = uvicorn + ["--loop", "asyncio", "--http", "h11"]
    # One worker per core, on uvloop: plain `--workers 2` (asyncio loop) loses
    # TCP_NODELAY on the socket the supervisor hands down, a 44 ms Nagle stall
    # per keep-alive request (uvicorn issue #3149). With uvloop no such stall
    # shows here: p50 stays near 0.6 ms at one connection.
    tuned = uvicorn + ["--workers", "2", "--loop", "uvloop", "--http", "httptools"]
    tuned.append("--no-access-log")
    env = {"BENCH_CHECKPOINT": str(checkpoint_path)}
    probe = predict_probe(predict_body)
    return [
        ServerSpec(TYPICAL, typical, probe, env),
        ServerSpec(TUNED, tuned, probe, env),
    ]
