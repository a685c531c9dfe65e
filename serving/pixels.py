"""Check raw pixel values in bulk: JSON numbers only, finite, within range.

Validation runs on every request, so it avoids a Python call per pixel: one
pass collects the set of element types, then numpy checks finiteness and range
on the whole array at once. Element types are checked first because
`np.asarray` silently turns `true` into 1.0 and `"5"` into 5.0.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from contract import INPUT_SIZE, PIXEL_MAX, PIXEL_MIN

JSON_NUMBER_TYPES = frozenset({int, float})  # bool is its own type, so excluded
MAX_REPORTED_ERRORS = 10  # enough to fix a request, small enough to read

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
    try:
        pixels = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer literal too large for any float
        pixels = np.asarray([float(v) if abs(v) < 1e308 else np.inf for v in values])
    # Fast path for valid input: two reductions. NaN makes both comparisons
    # False, so it falls through to the per-value report.
    if not (pixels.min() >= PIXEL_MIN and pixels.max() <= PIXEL_MAX):
        return None, range_errors(values, pixels)
    return pixels.astype(np.float32), {}


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
