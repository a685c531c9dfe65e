"""Marshmallow schemas for request and response bodies."""

from __future__ import annotations

import numpy as np
from marshmallow import Schema, ValidationError, fields, validate

from contract import CLASSES, INPUT_SIZE, PIXEL_MAX, PIXEL_MIN
from serving.pixels import json_type_name, to_pixel_array


class PixelVector(fields.Field):
    """One image: exactly 64 raw pixel values, row-major 8x8, each in 0..16.

    Loads to a (64,) float32 array. Errors are keyed by the offending index.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> np.ndarray:
        if not isinstance(value, list):
            raise ValidationError(
                f"must be an array of {INPUT_SIZE} numbers, got {json_type_name(value)}"
            )
        if len(value) != INPUT_SIZE:
            raise ValidationError(
                f"must have exactly {INPUT_SIZE} values, got {len(value)}"
            )
        pixels, errors = to_pixel_array(value)
        if errors:
            raise ValidationError({str(index): [msg] for index, msg in errors.items()})
        return pixels


class PredictRequestSchema(Schema):
    """Body of POST /predict."""

    features = PixelVector(
        required=True,
        metadata={
            "description": (
                f"{INPUT_SIZE} raw pixel values of an 8x8 image, row-major, "
                f"each a number in [{PIXEL_MIN:g}, {PIXEL_MAX:g}]"
            )
        },
    )


class PredictResponseSchema(Schema):
    """Body of a successful POST /predict."""

    prediction = fields.Integer(
        required=True,
        validate=validate.OneOf(CLASSES),
        metadata={"description": "the predicted digit"},
    )
    confidence = fields.Float(
        required=True,
        validate=validate.Range(0.0, 1.0),
        metadata={"description": "probability of the predicted digit"},
    )
