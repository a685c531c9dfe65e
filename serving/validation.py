"""Request validation: a JSON body to a checked float32 pixel array.

Validation runs on every request, so it avoids a Python call per pixel: one
pass collects the set of element types, then numpy checks finiteness and range
on the whole array at once. Element types are checked first because
`np.asarray` silently turns `true` into 1.0 and `"5"` into 5.0.

The marshmallow schemas here also document the request bodies on /docs.
"""

from __future__ import annotations

import math
from itertools import chain

import numpy as np
from marshmallow import Schema, ValidationError, fields

from contract import INPUT_SIZE, PIXEL_MAX, PIXEL_MIN
from serving.config import DEFAULT_MAX_BATCH_ROWS

JSON_NUMBER_TYPES = frozenset({int, float})  # bool is its own type, so excluded
MAX_REPORTED_ERRORS = 10  # enough to fix a request, small enough to read
SMALL_INPUT = 4 * INPUT_SIZE  # up to here, range checks run in plain Python

JSON_TYPE_NAMES = {
    str: "string",
    bool: "boolean",
    type(None): "null",
    list: "array",
    dict: "object",
    int: "number",
    float: "number",
}


def json_type_name(value: object) -> str:
    """Name a decoded JSON value's type the way a client would ("string", ...)."""
    return JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def non_number_errors(values: list) -> dict[int, str]:
    """Return {index: message} for the first values that are not JSON numbers."""
    errors: dict[int, str] = {}
    for index, value in enumerate(values):
        if type(value) not in JSON_NUMBER_TYPES:
            errors[index] = f"must be a number, got {json_type_name(value)}"
            if len(errors) == MAX_REPORTED_ERRORS:
                break
    return errors


def range_errors(values: list, pixels: np.ndarray) -> dict[int, str]:
    """Return {index: message} for the first values outside [PIXEL_MIN, PIXEL_MAX]."""
    # NaN fails both comparisons, so test "inside" and negate.
    bad = ~((pixels >= PIXEL_MIN) & (pixels <= PIXEL_MAX))
    indices = np.flatnonzero(bad)[:MAX_REPORTED_ERRORS].tolist()
    return {
        index: f"must be between {PIXEL_MIN:g} and {PIXEL_MAX:g}, got {values[index]!r}"
        for index in indices
    }


def to_pixel_array(values: list) -> tuple[np.ndarray | None, dict[int, str]]:
    """Convert a flat list of decoded JSON values to float32 pixels.

    Returns (pixels, {}) when every value is a finite number within range, and
    (None, {index: message}) naming the first offending values otherwise.
    """
    if not set(map(type, values)) <= JSON_NUMBER_TYPES:
        return None, non_number_errors(values)
    # One image: Python's min, max and sum on 64 numbers beat two numpy
    # reductions. A NaN can slip past min and max, never past the sum.
    if len(values) <= SMALL_INPUT and (
        PIXEL_MIN <= min(values) <= max(values) <= PIXEL_MAX
        and not math.isnan(sum(values))
    ):
        return np.array(values, dtype=np.float32), {}
    try:
        pixels = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer literal too large for any float
        pixels = np.asarray([float(v) if abs(v) < 1e308 else np.inf for v in values])
    # Fast path for valid input: two reductions. NaN makes both comparisons
    # False, so it falls through to the per-value report.
    if not (pixels.min() >= PIXEL_MIN and pixels.max() <= PIXEL_MAX):
        return None, range_errors(values, pixels)
    return pixels.astype(np.float32), {}


def checked_pixel_values(pixels: np.ndarray) -> dict[int, str]:
    """Return {flat index: message} for the first values of a numeric array that
    are NaN, infinite or outside [PIXEL_MIN, PIXEL_MAX]; {} when all are fine."""
    if pixels.min() >= PIXEL_MIN and pixels.max() <= PIXEL_MAX:
        return {}
    flat = pixels.ravel()
    return range_errors(flat.tolist(), flat)


def row_shape_error(row: object) -> str | None:
    """Return why `row` is not a list of INPUT_SIZE values, or None if it is."""
    if type(row) is not list:
        return f"must be an array of {INPUT_SIZE} numbers, got {json_type_name(row)}"
    if len(row) != INPUT_SIZE:
        return f"must have exactly {INPUT_SIZE} values, got {len(row)}"
    return None


def to_pixel_matrix(rows: list) -> tuple[np.ndarray | None, dict[str, object]]:
    """Convert a list of 64-value rows to (n, 64) float32 pixels.

    Returns (pixels, {}) when valid, else (None, errors) with errors keyed by
    row index, then by column index for a bad value inside a well-shaped row.
    """
    shape_errors: dict[str, object] = {}
    for index, row in enumerate(rows):
        message = row_shape_error(row)
        if message:
            shape_errors[str(index)] = [message]
            if len(shape_errors) == MAX_REPORTED_ERRORS:
                break
    if shape_errors:
        return None, shape_errors
    pixels, value_errors = to_pixel_array(list(chain.from_iterable(rows)))
    if value_errors:
        nested: dict[str, dict[str, list[str]]] = {}
        for flat_index, message in value_errors.items():
            row, column = divmod(flat_index, INPUT_SIZE)
            nested.setdefault(str(row), {})[str(column)] = [message]
        return None, nested
    return pixels.reshape(len(rows), INPUT_SIZE), {}


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


def checked_row(value: object) -> np.ndarray:
    """Return one image's (64,) float32 pixels, or raise ValidationError.

    Errors are keyed by pixel index, as marshmallow keys nested errors.
    """
    message = row_shape_error(value)
    if message:
        raise ValidationError(message)
    pixels, errors = to_pixel_array(value)
    if errors:
        raise ValidationError({str(i): [message] for i, message in errors.items()})
    return pixels


class PixelVector(fields.Field):
    """One image: exactly 64 raw pixel values, row-major 8x8, each in 0..16.

    Loads to a (64,) float32 array. Errors are keyed by the offending index.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> np.ndarray:
        return checked_row(value)


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


def load_features(schema: PredictRequestSchema, body: object) -> np.ndarray:
    """Return the (64,) pixels of a POST /predict body, or raise the schema's error.

    A body of the expected shape ({"features": ...} and nothing else) is
    checked by PixelVector's own check, without marshmallow's per-load
    machinery (about 20 µs of a /predict's work); anything else, or a bad row,
    goes through the schema, which raises the documented 422 details.
    """
    if type(body) is dict and len(body) == 1 and "features" in body:
        try:
            return checked_row(body["features"])
        except ValidationError:
            pass  # the schema reports it, with the field's key around it
    return schema.load(body)["features"]
