"""Routes of the inference protocols: Open Inference Protocol V2 and KServe V1.

They run the same model as /predict for the clients of KServe, Triton and
MLServer (tritonclient, the kserve SDK), which read an error as
{"error": "<message>"}: serving/http.py gives every path under
PROTOCOL_PREFIXES that shape.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from contract import MetadataKey
from serving.http import (
    InvalidInput,
    ModelNotFound,
    parse_json_body,
)
from serving.oip import (
    EXTENSIONS,
    HEADER_LENGTH,
    decode_infer_request,
    encode_infer_response,
    model_metadata,
)
from serving.routes import ServiceState, require_ready, state
from serving.telemetry import record_predictions

PROTOCOL_PREFIXES = ("/v1/", "/v2")
PROTOCOL_PROBE_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})
SERVER_NAME = "workflow-mnist"
SERVER_VERSION = "0.1.0"  # the project's version (pyproject.toml); a test compares

protocols = Blueprint("protocols", __name__)


def served_model(name: str, version: str | None = None) -> ServiceState:
    """The service state if `name` (and `version`) is the loaded model, else 404."""
    service = state()
    metadata = service.predictor.info.metadata
    served_name = metadata[MetadataKey.MODEL_NAME]
    served_version = metadata[MetadataKey.MODEL_VERSION]
    if name != served_name:
        raise ModelNotFound(
            f"model {name[:100]!r} is not served here; this server serves "
            f"{served_name!r}"
        )
    if version is not None and version != served_version:
        raise ModelNotFound(
            f"model {served_name!r} has no version {version[:100]!r}; "
            f"it serves version {served_version!r}"
        )
    return service


def protocol_body() -> bytes:
    """The raw body, whatever its Content-Type says, as KServe and Triton read it.

    tritonclient sends none, kserve's client application/octet-stream for
    binary tensors, and the protocols' curl examples form-encoded `-d @file`.
    """
    return request.get_data(cache=False)


# Open Inference Protocol (V2) -------------------------------------------------


@protocols.get("/v2")
def server_metadata() -> Response:
    return jsonify(
        {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}
    )


@protocols.get("/v2/health/live")
def server_live() -> Response:
    return jsonify({"live": True})


@protocols.get("/v2/health/ready")
def server_ready() -> Response:
    require_ready(state())
    return jsonify({"ready": True})


@protocols.get("/v2/models")
@protocols.get("/v1/models")
def served_models() -> Response:
    return jsonify(
        {"models": [state().predictor.info.metadata[MetadataKey.MODEL_NAME]]}
    )


@protocols.get("/v2/models/<name>")
@protocols.get("/v2/models/<name>/versions/<version>")
def v2_model_metadata(name: str, version: str | None = None) -> Response:
    return jsonify(model_metadata(served_model(name, version).predictor.info))


@protocols.get("/v2/models/<name>/ready")
@protocols.get("/v2/models/<name>/versions/<version>/ready")
def v2_model_ready(name: str, version: str | None = None) -> Response:
    require_ready(served_model(name, version))
    return jsonify({"name": name, "ready": True})


@protocols.post("/v2/models/<name>/infer")
@protocols.post("/v2/models/<name>/versions/<version>/infer")
def v2_infer(name: str, version: str | None = None) -> Response:
    service = served_model(name, version)
    info = service.predictor.info
    infer_request = decode_infer_request(
        protocol_body(),
        request.headers.get(HEADER_LENGTH),
        service.max_batch_rows,
        info,
    )
    probabilities = service.predictor.probabilities(infer_request.pixels)
    record_predictions(probabilities.argmax(axis=1))
    body, headers = encode_infer_response(infer_request, probabilities, info)
    return Response(body, headers=headers)


# KServe V1 ----------------------------------------------------------------------


@protocols.get("/v1/models/<name>")
def v1_model_ready(name: str) -> Response:
    require_ready(served_model(name))
    return jsonify({"name": name, "ready": True})


@protocols.post("/v1/models/<name>:predict")
def v1_predict(name: str) -> Response:
    """{"instances": [[64 pixels], ...]} -> {"predictions": [digit, ...]}."""
    service = served_model(name)
    try:
        document = service.batch_schema.load(parse_json_body(protocol_body()))
    except ValidationError as error:
        details = error.messages if isinstance(error.messages, dict) else {}
        raise InvalidInput("predict request is malformed", details) from None
    predictions = service.predictor.predict(document["instances"])
    record_predictions(predictions.labels)
    return jsonify({"predictions": predictions.labels.tolist()})
