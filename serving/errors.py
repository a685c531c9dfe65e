"""Errors that carry their HTTP status, and the one JSON shape they render to.

Every non-2xx body is {"error": {"code", "message", "details"}}: the status
gives the category, `code` is a fixed string clients can match on.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """Base class: subclasses set the status and the machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidJSON(ServingError):
    status = 400
    code = "invalid_json"


class InvalidBody(ServingError):
    status = 400
    code = "invalid_body"


class UnsupportedMediaType(ServingError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ServingError):
    status = 413
    code = "payload_too_large"


class NotReady(ServingError):
    status = 503
    code = "not_ready"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    """Build the one error body shape used for every non-2xx response."""
    return {"error": {"code": code, "message": message, "details": details or {}}}
