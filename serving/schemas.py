"""Response and error schemas: what clients get back, documented on /docs.

The OpenAPI document is generated from these and from the request schemas in
serving/validation.py; tests check real responses against them.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from contract import CLASSES


class PredictResponseSchema(Schema):
    """Body of a successful POST /predict: the seed's contract."""

    prediction = fields.Integer(
        required=True,
        validate=validate.OneOf(CLASSES),
        metadata={"description": "the predicted digit", "example": 0},
    )
    confidence = fields.Float(
        required=True,
        validate=validate.Range(0.0, 1.0),
        metadata={
            "description": "probability of the predicted digit",
            "example": 0.998,
        },
    )


class PredictBatchResponseSchema(Schema):
    """Body of a successful POST /predict/batch, in request order."""

    predictions = fields.List(fields.Nested(PredictResponseSchema), required=True)


class StatusSchema(Schema):
    """Body of GET /healthz and a ready GET /readyz."""

    status = fields.String(required=True, metadata={"example": "ok"})


class TensorSchema(Schema):
    """A graph input or output: name, element type and shape."""

    name = fields.String(required=True)
    dtype = fields.String(required=True, metadata={"example": "float32"})
    shape = fields.List(
        fields.Raw(), required=True, metadata={"example": ["batch", 64]}
    )


class ModelInfoSchema(Schema):
    """Body of GET /model: what the loaded ONNX file says about itself."""

    name = fields.String(required=True)
    version = fields.String(required=True)
    sha256 = fields.String(required=True)
    opset = fields.Integer(required=True, allow_none=True)
    input = fields.Nested(TensorSchema, required=True)
    output = fields.Nested(TensorSchema, required=True)
    pixel_range = fields.List(fields.Float(), required=True)
    classes = fields.List(fields.Integer(), required=True)
    normalization = fields.String(required=True)
    metrics = fields.Dict(keys=fields.String(), values=fields.Float())
    train_config = fields.Dict()
    metadata = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "the raw ONNX metadata_props"},
    )


class ErrorDetailSchema(Schema):
    """The inside of every error body."""

    code = fields.String(
        required=True,
        metadata={
            "description": "stable machine-readable code",
            "example": "invalid_request",
        },
    )
    message = fields.String(required=True)
    details = fields.Dict(
        required=True,
        metadata={
            "description": "per-field messages, keyed by index for pixel values",
            "example": {"features": {"12": ["must be between 0 and 16, got 17"]}},
        },
    )


class ErrorSchema(Schema):
    """Body of every non-2xx response."""

    error = fields.Nested(ErrorDetailSchema, required=True)


# The inference protocols (KServe V1, Open Inference Protocol V2) ---------------


class ProtocolErrorSchema(Schema):
    """Error body on /v1 and /v2 paths, as the protocols' clients read it.

    The machine-readable code is in the X-Error-Code header.
    """

    error = fields.String(
        required=True,
        metadata={"example": "input 'features' must be FP32, got 'FP64'"},
    )


class ServerMetadataSchema(Schema):
    """Body of GET /v2."""

    name = fields.String(required=True)
    version = fields.String(required=True)
    extensions = fields.List(fields.String(), required=True)


class TensorMetadataSchema(Schema):
    """A model input or output as the Open Inference Protocol describes it."""

    name = fields.String(required=True)
    datatype = fields.String(required=True, metadata={"example": "FP32"})
    shape = fields.List(fields.Integer(), required=True, metadata={"example": [-1, 64]})


class ModelMetadataSchema(Schema):
    """Body of GET /v2/models/{name}."""

    name = fields.String(required=True)
    versions = fields.List(fields.String(), required=True)
    platform = fields.String(required=True, metadata={"example": "onnxruntime_onnx"})
    inputs = fields.List(fields.Nested(TensorMetadataSchema), required=True)
    outputs = fields.List(fields.Nested(TensorMetadataSchema), required=True)


class LiveSchema(Schema):
    """Body of GET /v2/health/live."""

    live = fields.Boolean(required=True)


class ReadySchema(Schema):
    """Body of the protocols' readiness routes (name only for a model's)."""

    name = fields.String()
    ready = fields.Boolean(required=True)


class ModelListSchema(Schema):
    """Body of GET /v1/models and GET /v2/models."""

    models = fields.List(fields.String(), required=True)


class V1PredictResponseSchema(Schema):
    """Body of POST /v1/models/{name}:predict: one digit per instance."""

    predictions = fields.List(
        fields.Integer(validate=validate.OneOf(CLASSES)), required=True
    )
