"""What the benchmark runs: the servers, as users start them, and the load on each."""

from __future__ import annotations

import array
import itertools
import json
import os
import random
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from bench.load import HEADERS_SUFFIX
from bench.servers import HOST, ServerSpec, predict_probe, readyz_probe
from contract import INPUT_NAME, INPUT_SIZE, MODEL_NAME, PIXEL_MAX, PIXEL_MIN

BATCH_SIZES = (64, 1024)
# Open Inference Protocol infer, next to /predict at its headline concurrency.
V2_INFER_PATH = f"/v2/models/{MODEL_NAME}/infer"
V2_ROWS = (1, 64)
V2_ENCODINGS = ("json", "binary")
V2_CONNECTIONS = 8
PREDICT_CONNECTIONS = (1, 8, 32)
# c=1 is one worker against the one-core decode floor; c=2 keeps both busy.
BATCH_CONNECTIONS = (1, 2)
SEED = 0
# training.export writes the checkpoint next to model.onnx.
CHECKPOINT_FILENAME = "checkpoint.pt"
PRODUCTION = "Flask+granian+onnxruntime"
GUNICORN = "Flask+gunicorn sync (before)"
NOOP = "Flask+granian no-op route"
TYPICAL = "FastAPI+torch typical"
TUNED = "FastAPI+torch tuned"
NOOP_PATH = "/noop"  # bench/noop_app.py
# The same app as production, under the server it ran on before granian.
GUNICORN_APP = "serving.app:create_app()"
# Which variable the service reads for its multiprocess metrics directory.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class LoadRun:
    """One wrk run: which endpoint, which body, how many connections."""

    path: str
    body: str  # key of the body file: "predict", "batch-64", ...
    connections: int
    rows: int = 1
    encoding: str = ""  # "json" or "binary" where a route takes both

    @property
    def label(self) -> str:
        details = [f"{self.rows} rows"] if self.rows > 1 else []
        details += [self.encoding] if self.encoding else []
        return f"{self.path} ({', '.join(details)})" if details else self.path


def random_rows(rows: int, rng: random.Random) -> list[list[int]]:
    """Return `rows` images of INPUT_SIZE integer pixels, as clients send them."""
    low, high = int(PIXEL_MIN), int(PIXEL_MAX)
    return [[rng.randint(low, high) for _ in range(INPUT_SIZE)] for _ in range(rows)]


def v2_infer_body(rows: list[list[int]], encoding: str) -> tuple[bytes, str]:
    """An infer request of `rows`, JSON or with binary tensors; and its headers."""
    tensor = {"name": INPUT_NAME, "shape": [len(rows), INPUT_SIZE], "datatype": "FP32"}
    if encoding == "json":
        document = {"inputs": [{**tensor, "data": rows}]}
        return json.dumps(document, separators=(",", ":")).encode(), ""
    raw = array.array("f", (pixel for row in rows for pixel in row))
    if sys.byteorder != "little":
        raw.byteswap()  # the binary extension is little-endian
    tensor["parameters"] = {"binary_data_size": len(raw) * raw.itemsize}
    document = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    header = json.dumps(document, separators=(",", ":")).encode()
    headers = (
        "Content-Type: application/octet-stream\n"
        f"Inference-Header-Content-Length: {len(header)}\n"
    )
    return header + raw.tobytes(), headers


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
    for rows, encoding in itertools.product(V2_ROWS, V2_ENCODINGS):
        key = f"v2-{encoding}-{rows}"
        content, headers = v2_infer_body(random_rows(rows, rng), encoding)
        paths[key] = directory / f"{key}.body"
        paths[key].write_bytes(content)
        if headers:
            paths[key].with_name(paths[key].name + HEADERS_SUFFIX).write_text(headers)
    return paths


def v2_runs() -> list[LoadRun]:
    """Return the Open Inference Protocol infer runs, JSON and binary."""
    return [
        LoadRun(V2_INFER_PATH, f"v2-{encoding}-{rows}", V2_CONNECTIONS, rows, encoding)
        for rows, encoding in itertools.product(V2_ROWS, V2_ENCODINGS)
    ]


def production_runs() -> list[LoadRun]:
    """Return the load runs of the production server."""
    runs = [LoadRun("/predict", "predict", c) for c in PREDICT_CONNECTIONS]
    runs += [
        LoadRun("/predict/batch", f"batch-{rows}", c, rows)
        for rows in BATCH_SIZES
        for c in BATCH_CONNECTIONS
    ]
    return runs + v2_runs()


def predict_runs() -> list[LoadRun]:
    """Return the /predict runs every server gets (the seed had no batch route)."""
    return [LoadRun("/predict", "predict", c) for c in PREDICT_CONNECTIONS]


def noop_runs() -> list[LoadRun]:
    """Return the no-op route's runs: the /predict body, where the ratios need it."""
    return [LoadRun(NOOP_PATH, "predict", c) for c in PREDICT_CONNECTIONS if c > 1]


def schedule(plans: Iterable[list[LoadRun]]) -> list[LoadRun]:
    """Order every distinct run: by rows, then connections, then path.

    Runs compared in a ratio (/predict and /noop at c=8, say) then follow each
    other, so a burst of other work on the machine skews both or neither.
    """
    runs = dict.fromkeys(run for plan in plans for run in plan)
    return sorted(runs, key=lambda run: (run.rows, run.connections, run.path))


def worker_count(overrides: Mapping[str, str]) -> int:
    """The production server's worker count: SERVE_WORKERS, else one per core.

    Mirrors serving/config.py's default (this process has no serving imports).
    """
    return int(overrides.get("SERVE_WORKERS") or 0) or len(os.sched_getaffinity(0))


def flask_specs(
    serve_python: str,
    model_path: Path,
    predict_body: bytes,
    overrides: Mapping[str, str],
) -> list[ServerSpec]:
    """The service's app from the serve env, under each server, same SERVE_* env.

    Production is `python -m serving` with its default settings (plus any
    overrides). The no-op server (bench/launch.py noop) is the same server and
    settings with one more route. gunicorn runs the same app as it did before
    granian (bench/launch.py: preflight, then exec gunicorn): sync
    workers, one per core, no preload, heartbeat files in /dev/shm, no control
    socket; it needs a fresh metrics directory per start.
    """
    env = {"SERVE_MODEL_PATH": str(model_path), **overrides}
    probe = readyz_probe(predict_body)
    gunicorn = [
        serve_python,
        "-m",
        "bench.launch",
        "gunicorn",
        "--worker-class",
        "sync",
    ]
    gunicorn += ["--workers", str(worker_count(overrides))]
    gunicorn += ["--bind", f"{HOST}:{{port}}", "--worker-tmp-dir", "/dev/shm"]
    gunicorn += ["--no-control-socket", GUNICORN_APP]
    return [
        ServerSpec(PRODUCTION, [serve_python, "-m", "serving"], probe, env),
        ServerSpec(
            GUNICORN, gunicorn, probe, env, fresh_dir_variable=METRICS_DIR_VARIABLE
        ),
        ServerSpec(NOOP, [serve_python, "-m", "bench.launch", "noop"], probe, env),
    ]


def variant_spec(
    serve_python: str,
    model_path: Path,
    predict_body: bytes,
    overrides: Mapping[str, str],
    settings: Iterable[tuple[str, str]],
) -> ServerSpec:
    """Production with a few more settings, named after them."""
    settings = dict(settings)
    production, *_ = flask_specs(
        serve_python, model_path, predict_body, {**overrides, **settings}
    )
    named = ", ".join(f"{name}={value}" for name, value in settings.items())
    return replace(production, name=f"{PRODUCTION} ({named})")


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
