"""Marshmallow schemas for every request and response body.

The OpenAPI document is generated from these (see serving/openapi.py), so the
descriptions and examples here are what users read on /docs.
"""

from __future__ import annotations

import numpy as np
from marshmallow import Schema, ValidationError, fields, validate

from contract import CLASSES, INPUT_SIZE, PIXEL_MAX, PIXEL_MIN
from serving.config import DEFAULT_MAX_BATCH_ROWS
from serving.pixels import json_type_name, row_shape_error, to_pixel_matrix

# A real digit (a zero from load_digits), used as the example in the docs.
EXAMPLE_FEATURES = [
    0, 0, 5, 13, 9, 1, 0, 0,
    0, 0, 13, 15, 10, 15, 5, 0,
    0, 3, 15, 2, 0, 11, 8, 0,
    0, 4, 12, 0, 0, 8, 8, 0,
    0, 5, 8, 0, 0, 9, 8, 0,
    0, 4, 11, 0, 1, 12, 7, 0,
    0, 2, 14, 5, 10, 12, 0, 0,
    0, 0, 6, 13, 10, 0, 0, 0,
]  # fmt: skip
PIXELS_DESCRIPTION = (
    f"{INPUT_SIZE} raw pixel values of an 8x8 image, row-major, each a number "
    f"in [{PIXEL_MIN:g}, {PIXEL_MAX:g}]"
)


class PixelVector(fields.Field):
    """One image: exactly 64 raw pixel values, row-major 8x8, each in 0..16.

    Loads to a (64,) float32 array. Errors are keyed by the offending index.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> np.ndarray:
        message = row_shape_error(value)
        if message:
            raise ValidationError(message)
        pixels, errors = to_pixel_matrix([value])
        if errors:
            raise ValidationError(errors["0"])  # one image: key by pixel only
        return pixels[0]


class PixelMatrix(fields.Field):
    """A batch of images: 1..max_rows rows of 64 raw pixel values each.

    Loads to a (rows, 64) float32 array. Errors are keyed by row, then column.
    """

    def __init__(self, max_rows: int = DEFAULT_MAX_BATCH_ROWS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_rows = max_rows

    def _deserialize(self, value, attr, data, **kwargs) -> np.ndarray:
        if not isinstance(value, list):
            raise ValidationError(
                f"must be an array of rows, got {json_type_name(value)}"
            )
        if not 1 <= len(value) <= self.max_rows:
            raise ValidationError(
                f"must have between 1 and {self.max_rows} rows, got {len(value)}"
            )
        pixels, errors = to_pixel_matrix(value)
        if errors:
            raise ValidationError(errors)
        return pixels


class PredictRequestSchema(Schema):
    """Body of POST /predict."""

    features = PixelVector(
        required=True,
        metadata={"description": PIXELS_DESCRIPTION, "example": EXAMPLE_FEATURES},
    )


class PredictBatchRequestSchema(Schema):
    """Body of POST /predict/batch."""

    instances = PixelMatrix(
        required=True,
        metadata={
            "description": f"rows of {PIXELS_DESCRIPTION}; one prediction per row",
            "example": [EXAMPLE_FEATURES],
        },
    )

    def __init__(self, max_rows: int = DEFAULT_MAX_BATCH_ROWS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fields["instances"].max_rows = max_rows


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
