"""The HTTP routes. Views parse, predict and return; errors are raised.

Bodies are read with Flask's `request.get_json()`: serving/http.py makes it
strict and maps its failures onto the service's error codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from serving.http import MetricsDown, NotReady
from serving.model import Predictor
from serving.telemetry import (
    MetricsUnavailable,
    record_prediction,
    record_predictions,
    render_metrics,
)
from serving.validation import (
    PredictBatchRequestSchema,
    PredictRequestSchema,
    load_features,
)

STATE_KEY = "digits"
PROBE_PATHS = frozenset({"/healthz", "/readyz"})  # answered without queueing

api = Blueprint("api", __name__)


@dataclass
class ServiceState:
    """What the routes share inside one worker process."""

    predictor: Predictor
    max_batch_rows: int
    metrics_dir: str
    openapi: dict[str, Any]
    model_description: dict[str, Any]
    ready: bool = False
    not_ready_reason: str = "warm-up has not run"
    predict_schema: PredictRequestSchema = field(default_factory=PredictRequestSchema)
    batch_schema: PredictBatchRequestSchema = field(init=False)

    def __post_init__(self) -> None:
        self.batch_schema = PredictBatchRequestSchema(max_rows=self.max_batch_rows)


def state() -> ServiceState:
    """Return this worker's shared state."""
    return current_app.extensions[STATE_KEY]


def classify(
    service: ServiceState, features: np.ndarray
) -> list[dict[str, int | float]]:
    """Run one onnxruntime call on (n, 64) float32 pixels and count the results."""
    predictions = service.predictor.predict(features)
    record_predictions(predictions.labels)
    return predictions.as_dicts()


@api.post("/predict")
def predict() -> Response:
    service = state()
    pixels = load_features(service.predict_schema, request.get_json())
    result = service.predictor.predict_one(pixels)
    record_prediction(result["prediction"])
    return jsonify(result)


@api.post("/predict/batch")
def predict_batch() -> Response:
    service = state()
    body = service.batch_schema.load(request.get_json())
    return jsonify({"predictions": classify(service, body["instances"])})


@api.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def require_ready(service: ServiceState) -> None:
    """Raise 503 until the model is loaded and warmed up."""
    if not service.ready:
        raise NotReady(f"model not ready: {service.not_ready_reason}")


@api.get("/readyz")
def readyz() -> Response:
    require_ready(state())
    return jsonify({"status": "ready"})


@api.get("/model")
def model_info() -> Response:
    return jsonify(state().model_description)


@api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(state().openapi)


@api.get("/metrics")
def metrics() -> Response:
    try:
        body, content_type = render_metrics(state().metrics_dir)
    except MetricsUnavailable as problem:
        raise MetricsDown(str(problem)) from None
    return Response(body, content_type=content_type)
