"""Check raw pixel values in bulk: JSON numbers only, finite, within range.

Validation runs on every request, so it avoids a Python call per pixel: one
pass collects the set of element types, then numpy checks finiteness and range
on the whole array at once. Element types are checked first because
`np.asarray` silently turns `true` into 1.0 and `"5"` into 5.0.
"""

from __future__ import annotations

import numpy as np

from contract import PIXEL_MAX, PIXEL_MIN

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
    errors = range_errors(values, pixels)
    if errors:
        return None, errors
    return pixels.astype(np.float32), {}
