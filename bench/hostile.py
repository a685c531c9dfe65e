"""What hostile bodies cost: CPU and peak memory against the largest valid batch.

    python -m bench.hostile [--repeat 5]

Each body fits the default size limit (SERVE_MAX_CONTENT_LENGTH, 2 MiB) and is
sent in process to the production app (default settings, the exported model),
so only the app's own work is measured: parsing, validation, the answer.
Prints, per body, the status, the answer's size, the median CPU time and the
peak resident memory of the process while it ran (VmHWM, reset before each
request), each also as a ratio to a valid 1024-row batch of long floats, the
largest valid request. The process holds what a worker holds (the libraries,
the model, the app) plus the test client, which keeps its own copy of a body.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract import ARTIFACTS_DIR, INPUT_NAME, INPUT_SIZE, MODEL_FILENAME
from serving.app import create_app
from serving.config import ServeConfig

LIMIT = ServeConfig().max_content_length
ROWS = ServeConfig().max_batch_rows


def long_floats(count: int, rng: random.Random) -> list[float]:
    return [rng.uniform(0, 16) for _ in range(count)]


def fill(make: Callable[[int], str], high: int) -> bytes:
    """The largest body `make(n)` gives within LIMIT bytes, n <= high (bisection)."""
    low = 1
    while low < high:
        middle = (low + high + 1) // 2
        if len(make(middle).encode()) <= LIMIT:
            low = middle
        else:
            high = middle - 1
    return make(low).encode()


def nested(depth: int, count: int) -> str:
    one = "[" * depth + "]" * depth
    return ",".join([one] * count)


def unknown_keys(count: int) -> str:
    return json.dumps({"features": [0] * 64, **{f"k{i}": 0 for i in range(count)}})


def v2_flat(count: int) -> str:
    tensor = {"name": INPUT_NAME, "shape": [1, 64], "datatype": "FP32"}
    return json.dumps({"inputs": [{**tensor, "data": [1.5] * count}]})


def bodies() -> dict[str, tuple[str, bytes]]:
    """(route, body) for each case; the first is the valid reference."""
    rng = random.Random(0)
    reference = json.dumps({"instances": [long_floats(INPUT_SIZE, rng)] * ROWS})
    rows_over = ROWS + 64
    return {
        "valid: 1024 rows of long floats": ("/predict/batch", reference.encode()),
        "unknown keys": ("/predict", fill(unknown_keys, LIMIT // 8)),
        "one long key name": (
            "/predict",
            fill(lambda n: json.dumps({"features": [0] * 64, "k" * n: 0}), LIMIT),
        ),
        "arrays nested 500 deep": (
            "/predict/batch",
            fill(lambda n: '{"instances": [' + nested(500, n) + "]}", LIMIT // 1000),
        ),
        "1088 rows of many numbers": (
            "/predict/batch",
            fill(
                lambda n: json.dumps({"instances": [[1.5] * n] * rows_over}),
                LIMIT // (5 * rows_over),
            ),
        ),
        "one row of many zeros": (
            "/predict",
            fill(lambda n: json.dumps({"features": [0] * n}), LIMIT // 3),
        ),
        "a string of escapes": (
            "/predict",
            fill(lambda n: json.dumps({"features": ["\u0001" * n]}), LIMIT // 6),
        ),
        "V2: flat data, wrong count": (
            "/v2/models/digits-mlp/infer",
            fill(v2_flat, LIMIT // 5),
        ),
        "V1: 1024 rows of strings": (
            "/v1/models/digits-mlp:predict",
            fill(
                lambda n: json.dumps({"instances": [["x" * n] * 64] * ROWS}),
                LIMIT // (64 * ROWS),
            ),
        ),
    }


@dataclass(frozen=True)
class Cost:
    status: int
    answer_bytes: int
    cpu_ms: float
    peak_mib: float


def reset_peak_rss() -> None:
    """Start a new high-water mark of this process's resident memory (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(client, route: str, body: bytes, repeat: int) -> Cost:
    cpu, peaks = [], []
    for _ in range(repeat):
        gc.collect()
        reset_peak_rss()
        started = time.process_time()
        response = client.post(route, data=body, content_type="application/json")
        cpu.append(1000 * (time.process_time() - started))
        peaks.append(peak_rss_mib())
    return Cost(
        response.status_code,
        len(response.data),
        statistics.median(cpu),
        statistics.median(peaks),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # no access lines in the report
    config = ServeConfig(
        model_path=f"{ARTIFACTS_DIR}/{MODEL_FILENAME}", access_log=False
    )
    client = create_app(config).test_client()
    cases = bodies()
    costs = {name: measure(client, *case, args.repeat) for name, case in cases.items()}
    reference = next(iter(costs.values()))
    print(f"Command: `python -m bench.hostile --repeat {args.repeat}`\n")
    print("| body | bytes | status | answer bytes | CPU ms | × valid |", end="")
    print(" peak RSS MiB | × valid |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cost in costs.items():
        size = len(cases[name][1])
        print(
            f"| {name} | {size:,} | {cost.status} | {cost.answer_bytes:,} "
            f"| {cost.cpu_ms:.1f} | {cost.cpu_ms / reference.cpu_ms:.2f} "
            f"| {cost.peak_mib:.1f} | {cost.peak_mib / reference.peak_mib:.2f} |"
        )


if __name__ == "__main__":
    main()
