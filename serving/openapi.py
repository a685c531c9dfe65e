"""Generate the OpenAPI 3 document from the marshmallow schemas with apispec."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from contract import INPUT_SIZE, PIXEL_MAX, PIXEL_MIN
from serving.oip import InferRequestSchema, InferResponseSchema
from serving.schemas import (
    ErrorSchema,
    LiveSchema,
    ModelInfoSchema,
    ModelListSchema,
    ModelMetadataSchema,
    PredictBatchResponseSchema,
    PredictResponseSchema,
    ProtocolErrorSchema,
    ReadySchema,
    ServerMetadataSchema,
    StatusSchema,
    V1PredictResponseSchema,
)
from serving.validation import (
    EXAMPLE_FEATURES,
    PixelMatrix,
    PixelVector,
    PredictBatchRequestSchema,
    PredictRequestSchema,
)

OPENAPI_VERSION = "3.0.3"
PIXEL_ROW = {
    "type": "array",
    "items": {"type": "number", "minimum": PIXEL_MIN, "maximum": PIXEL_MAX},
    "minItems": INPUT_SIZE,
    "maxItems": INPUT_SIZE,
}


def pixel_field_properties(self, field: fields.Field, **kwargs: Any) -> dict:
    """Describe the custom pixel fields as JSON arrays with their bounds."""
    if isinstance(field, PixelVector):
        return dict(PIXEL_ROW)
    if isinstance(field, PixelMatrix):
        return {
            "type": "array",
            "items": PIXEL_ROW,
            "minItems": 1,
            "maxItems": field.max_rows,
        }
    return {}


def json_content(schema: str, example: Any = None) -> dict:
    """Describe a JSON body of component `schema`, with an optional example."""
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


def error_reply(description: str) -> dict:
    """Describe an error response: the one Error schema, with `description`."""
    return {"description": description, **json_content("Error")}


VALIDATION_ERRORS = {
    "400": error_reply(
        "body is not valid JSON (NaN, Infinity, 1e400 included), or has more "
        "arrays, objects or keys than any valid request (json_too_complex)"
    ),
    "408": error_reply(
        "the body stopped for over SERVE_TIMEOUT seconds (request_timeout)"
    ),
    "413": error_reply("body larger than the configured limit"),
    "415": error_reply("Content-Type is not application/json"),
    "422": error_reply("body failed validation; details name each bad value"),
}


def operations(max_batch_rows: int) -> dict[str, dict[str, Any]]:
    """Describe every route: path -> {method: operation}."""
    return {
        "/predict": {
            "post": {
                "summary": "Classify one 8x8 digit",
                "requestBody": {
                    "required": True,
                    **json_content("PredictRequest", {"features": EXAMPLE_FEATURES}),
                },
                "responses": {
                    "200": {
                        "description": "the predicted digit and its probability",
                        **json_content(
                            "PredictResponse", {"prediction": 0, "confidence": 0.998}
                        ),
                    },
                    **VALIDATION_ERRORS,
                },
            }
        },
        "/predict/batch": {
            "post": {
                "summary": f"Classify 1 to {max_batch_rows} digits in one call",
                "requestBody": {
                    "required": True,
                    **json_content(
                        "PredictBatchRequest", {"instances": [EXAMPLE_FEATURES]}
                    ),
                },
                "responses": {
                    "200": {
                        "description": "one prediction per row, in request order",
                        **json_content("PredictBatchResponse"),
                    },
                    **VALIDATION_ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process is up",
                "responses": {
                    "200": {"description": "alive", **json_content("Status")}
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: model loaded and warmed up",
                "responses": {
                    "200": {"description": "ready", **json_content("Status")},
                    "503": error_reply("not ready yet"),
                },
            }
        },
        "/model": {
            "get": {
                "summary": "Metadata of the loaded model, read from the ONNX file",
                "responses": {
                    "200": {"description": "ok", **json_content("ModelInfo")}
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over all workers",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3 document"}},
            }
        },
    }


def protocol_error(description: str) -> dict:
    """An error on the protocol paths: {"error": "<message>"}."""
    return {"description": description, **json_content("ProtocolError")}


def path_parameters(*names: str) -> list[dict]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in names
    ]


def protocol_get(summary: str, schema: str, *params: str, errors=None) -> dict:
    """A GET route of the protocols answering `schema`."""
    return {
        "get": {
            "summary": summary,
            "tags": ["Inference protocols"],
            "parameters": path_parameters(*params),
            "responses": {
                "200": {"description": "ok", **json_content(schema)},
                **(errors or {}),
            },
        }
    }


MODEL_ERRORS = {"404": protocol_error("no such model or version")}
READY_ERRORS = {"503": protocol_error("not ready"), **MODEL_ERRORS}
INFER_ERRORS = {
    "400": protocol_error("not valid JSON, or not a valid inference request"),
    "408": protocol_error("the body stopped for over SERVE_TIMEOUT seconds"),
    "413": protocol_error("body larger than the configured limit"),
    **MODEL_ERRORS,
}
V2_INFER_EXAMPLE = {
    "id": "42",
    "inputs": [
        {
            "name": "features",
            "shape": [1, INPUT_SIZE],
            "datatype": "FP32",
            "data": EXAMPLE_FEATURES,
        }
    ],
}


def v2_infer(*params: str) -> dict:
    return {
        "post": {
            "summary": "Open Inference Protocol inference: class probabilities",
            "description": (
                "JSON tensors, or the binary tensor extension: a JSON header of "
                "Inference-Header-Content-Length bytes followed by raw little-endian "
                "FP32 values (any Content-Type, none included)."
            ),
            "tags": ["Inference protocols"],
            "parameters": path_parameters(*params),
            "requestBody": {
                "required": True,
                **json_content("InferRequest", V2_INFER_EXAMPLE),
            },
            "responses": {
                "200": {
                    "description": "probabilities [n, 10], JSON or binary",
                    **json_content("InferResponse"),
                },
                **INFER_ERRORS,
            },
        }
    }


def protocol_operations() -> dict[str, dict[str, Any]]:
    """The KServe V1 and Open Inference Protocol V2 routes."""
    model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    return {
        "/": {
            "get": {
                "summary": "The draw-a-digit page, or KServe V1's server liveness",
                "description": (
                    "A browser (Accept: text/html) gets the page; other clients "
                    'get {"status": "alive"}, which the kserve SDK reads.'
                ),
                "responses": {
                    "200": {
                        "description": "the page, or the liveness answer",
                        "content": {
                            "text/html": {"schema": {"type": "string"}},
                            **json_content("Status")["content"],
                        },
                    }
                },
            }
        },
        "/v2": protocol_get("Server metadata", "ServerMetadata"),
        "/v2/health/live": protocol_get("Server liveness", "Live"),
        "/v2/health/ready": protocol_get(
            "Server readiness", "Ready", errors={"503": protocol_error("not ready")}
        ),
        "/v2/models": protocol_get("Served models", "ModelList"),
        model: protocol_get(
            "Model metadata", "ModelMetadata", "name", errors=MODEL_ERRORS
        ),
        version: protocol_get(
            "Model metadata", "ModelMetadata", "name", "version", errors=MODEL_ERRORS
        ),
        f"{model}/ready": protocol_get(
            "Model readiness", "Ready", "name", errors=READY_ERRORS
        ),
        f"{version}/ready": protocol_get(
            "Model readiness", "Ready", "name", "version", errors=READY_ERRORS
        ),
        f"{model}/infer": v2_infer("name"),
        f"{version}/infer": v2_infer("name", "version"),
        "/v1/models": protocol_get("KServe V1: served models", "ModelList"),
        "/v1/models/{name}": protocol_get(
            "KServe V1: model readiness", "Ready", "name", errors=READY_ERRORS
        ),
        "/v1/models/{name}:predict": {
            "post": {
                "summary": "KServe V1 prediction: one digit per instance",
                "tags": ["Inference protocols"],
                "parameters": path_parameters("name"),
                "requestBody": {
                    "required": True,
                    **json_content(
                        "PredictBatchRequest", {"instances": [EXAMPLE_FEATURES]}
                    ),
                },
                "responses": {
                    "200": {
                        "description": "the predicted digits, in request order",
                        **json_content("V1PredictResponse", {"predictions": [0]}),
                    },
                    **INFER_ERRORS,
                },
            }
        },
    }


def build_openapi(model_version: str, max_batch_rows: int) -> dict[str, Any]:
    """Return the OpenAPI document as a dict."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Digits classifier",
        version=model_version,
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={
            "description": (
                "Classify 8x8 handwritten digits (scikit-learn digits) with an "
                "ONNX MLP. Send raw pixels 0..16, row-major; the model normalises."
            )
        },
    )
    plugin.converter.add_attribute_function(pixel_field_properties)
    named_schemas = {
        "PredictRequest": PredictRequestSchema(),
        "PredictBatchRequest": PredictBatchRequestSchema(max_rows=max_batch_rows),
        "PredictResponse": PredictResponseSchema(),
        "PredictBatchResponse": PredictBatchResponseSchema(),
        "Status": StatusSchema(),
        "ModelInfo": ModelInfoSchema(),
        "Error": ErrorSchema(),
        "InferRequest": InferRequestSchema(),
        "InferResponse": InferResponseSchema(),
        "ServerMetadata": ServerMetadataSchema(),
        "ModelMetadata": ModelMetadataSchema(),
        "Live": LiveSchema(),
        "Ready": ReadySchema(),
        "ModelList": ModelListSchema(),
        "V1PredictResponse": V1PredictResponseSchema(),
        "ProtocolError": ProtocolErrorSchema(),
    }
    for name, schema in named_schemas.items():
        spec.components.schema(name, schema=schema)
    all_operations = {**operations(max_batch_rows), **protocol_operations()}
    for path, path_operations in all_operations.items():
        spec.path(path=path, operations=path_operations)
    return spec.to_dict()
