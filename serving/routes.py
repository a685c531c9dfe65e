"""The HTTP routes. Views parse, predict and return; errors are raised."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify

from contract import MetadataKey
from serving.body import read_json_body
from serving.errors import NotReady
from serving.metrics import record_predictions, render_metrics
from serving.model import Predictor
from serving.schemas import PredictBatchRequestSchema, PredictRequestSchema

STATE_KEY = "digits"
ONNX_DTYPES = {"tensor(float)": "float32"}

api = Blueprint("api", __name__)


@dataclass
class ServiceState:
    """What the routes share inside one worker process."""

    predictor: Predictor
    max_batch_rows: int
    max_content_length: int
    metrics_dir: str
    openapi: dict[str, Any]
    model_description: dict[str, Any]
    ready: bool = False
    not_ready_reason: str = "warm-up has not run"
    predict_schema: PredictRequestSchema = field(default_factory=PredictRequestSchema)
    batch_schema: PredictBatchRequestSchema | None = None

    def __post_init__(self) -> None:
        self.batch_schema = PredictBatchRequestSchema(max_rows=self.max_batch_rows)


def state() -> ServiceState:
    return current_app.extensions[STATE_KEY]


def classify(features: np.ndarray) -> list[dict[str, int | float]]:
    """Run one onnxruntime call on (n, 64) float32 pixels and count the results."""
    predictions = state().predictor.predict(features)
    record_predictions(predictions.labels)
    return predictions.as_dicts()


@api.post("/predict")
def predict() -> Response:
    service = state()
    body = service.predict_schema.load(read_json_body(service.max_content_length))
    (result,) = classify(body["features"].reshape(1, -1))
    return jsonify(result)


@api.post("/predict/batch")
def predict_batch() -> Response:
    service = state()
    body = service.batch_schema.load(read_json_body(service.max_content_length))
    return jsonify({"predictions": classify(body["instances"])})


@api.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@api.get("/readyz")
def readyz() -> Response:
    if not state().ready:
        raise NotReady(f"model not ready: {state().not_ready_reason}")
    return jsonify({"status": "ready"})


@api.get("/model")
def model_info() -> Response:
    return jsonify(state().model_description)


@api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(state().openapi)


@api.get("/metrics")
def metrics() -> Response:
    body, content_type = render_metrics(state().metrics_dir)
    return Response(body, content_type=content_type)


def describe_model(predictor: Predictor) -> dict[str, Any]:
    """Summarise the loaded file from its graph and metadata_props."""
    info = predictor.info
    meta = info.metadata
    session = predictor.session
    tensors = {
        kind: {
            "name": tensor.name,
            "dtype": ONNX_DTYPES.get(tensor.type, tensor.type),
            "shape": list(tensor.shape),
        }
        for kind, tensor in (
            ("input", session.get_inputs()[0]),
            ("output", session.get_outputs()[0]),
        )
    }
    return {
        "name": meta[MetadataKey.MODEL_NAME],
        "version": meta[MetadataKey.MODEL_VERSION],
        "sha256": info.sha256,
        "opset": int(meta[MetadataKey.OPSET]) if MetadataKey.OPSET in meta else None,
        **tensors,
        "pixel_range": [
            float(meta[MetadataKey.PIXEL_MIN]),
            float(meta[MetadataKey.PIXEL_MAX]),
        ],
        "classes": json.loads(meta[MetadataKey.CLASSES]),
        "normalization": meta[MetadataKey.NORMALIZATION],
        "metrics": {
            key: float(meta[key]) for key in (MetadataKey.TEST_ACCURACY,) if key in meta
        },
        "train_config": json.loads(meta.get(MetadataKey.TRAIN_CONFIG, "{}")),
        "metadata": meta,
    }
