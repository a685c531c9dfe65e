"""Measure the floors under the HTTP service, in the serve environment, on one core.

Usage: python -m bench.floors MODEL_PATH PREDICT_BODY BATCH_BODY

- model floor: onnxruntime alone, with the service's own session options;
- decode floor: the service's own decode path for a batch body (orjson.loads,
  then the /predict/batch request schema), i.e. the service minus HTTP, plus
  the bare orjson.loads + numpy conversion for comparison.

Prints one JSON object of rates. Each rate is the best of a few timed rounds:
a floor is the fastest the work goes, and noise from other processes only
ever adds time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import orjson

from contract import INPUT_SIZE
from serving.model import Predictor
from serving.validation import PredictBatchRequestSchema, PredictRequestSchema

ROUNDS = 5
ROUND_SECONDS = 0.2
CALIBRATION_SECONDS = 0.02
SEED = 0


def timed(function: Callable[[], object], calls: int) -> float:
    """Return the seconds `calls` calls of `function` take."""
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return time.perf_counter() - started


def calls_per_second(function: Callable[[], object]) -> float:
    """Return the best rate over ROUNDS rounds of about ROUND_SECONDS each."""
    calls = 1
    while (elapsed := timed(function, calls)) < CALIBRATION_SECONDS:
        calls *= 2
    calls = max(1, round(calls * ROUND_SECONDS / elapsed))
    return max(calls / timed(function, calls) for _ in range(ROUNDS))


def bare_decode(body: bytes) -> np.ndarray:
    """Parse and convert a batch body with no validation: (n, 64) float32."""
    return np.asarray(orjson.loads(body)["instances"], dtype=np.float32)


def measure(model_path: str, predict_body: bytes, batch_body: bytes) -> dict:
    """Return every floor as {name: value}; rates are per second."""
    predictor = Predictor.load(model_path)
    rng = np.random.default_rng(SEED)
    batch_rows = len(orjson.loads(batch_body)["instances"])
    single = rng.integers(0, 17, (1, INPUT_SIZE)).astype(np.float32)
    batch = rng.integers(0, 17, (batch_rows, INPUT_SIZE)).astype(np.float32)
    # The schemas the routes use (serving/routes.py), after the same orjson.loads.
    predict_schema = PredictRequestSchema()
    batch_schema = PredictBatchRequestSchema(max_rows=batch_rows)
    return {
        "batch_rows": batch_rows,
        "onnx_rows_per_s_batch_1": calls_per_second(
            lambda: predictor.probabilities(single)
        ),
        "onnx_rows_per_s_batch_n": batch_rows
        * calls_per_second(lambda: predictor.probabilities(batch)),
        "predict_decode_per_s": calls_per_second(
            lambda: predict_schema.load(orjson.loads(predict_body))
        ),
        "bare_decode_rows_per_s": batch_rows
        * calls_per_second(lambda: bare_decode(batch_body)),
        "service_decode_rows_per_s": batch_rows
        * calls_per_second(lambda: batch_schema.load(orjson.loads(batch_body))),
    }


def main() -> None:
    """Entry point of `python -m bench.floors`."""
    model_path, predict_path, batch_path = sys.argv[1:4]
    with open(predict_path, "rb") as predict, open(batch_path, "rb") as batch:
        floors = measure(model_path, predict.read(), batch.read())
    sys.stdout.write(orjson.dumps(floors).decode() + "\n")


if __name__ == "__main__":
    main()
