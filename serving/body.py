"""Read a request body within the size limit and parse it as strict JSON."""

from __future__ import annotations

import orjson
from flask import request

from serving.errors import (
    InvalidBody,
    InvalidJSON,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)

# A body over the limit but under this size is read and discarded before the
# 413, so a client still sending it gets the answer instead of a reset
# connection; a larger one is not worth the worker's time.
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
DRAIN_CHUNK_BYTES = 64 * 1024


def too_large(limit: int, length: int | None = None) -> PayloadTooLarge:
    """Build the 413 for a body over `limit` bytes."""
    size = f"{length} bytes" if length is not None else "larger than that"
    return PayloadTooLarge(
        f"request body is {size}; the limit is {limit} bytes", {"limit_bytes": limit}
    )


def read_limited_body(limit: int) -> bytes:
    """Return the raw body, or raise PayloadTooLarge / InvalidBody."""
    stream = request.environ["wsgi.input"]
    length = request.content_length
    try:
        if length is None:
            if not request.environ.get("wsgi.input_terminated"):
                return b""  # no length and no chunked framing: no body
            # Chunked: nothing declares the size, so read one byte past the
            # limit to tell a body that fits from one that does not.
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise too_large(limit)
            return body
        if length > limit:
            if length <= DRAIN_LIMIT_BYTES:
                while stream.read(DRAIN_CHUNK_BYTES):
                    pass
            raise too_large(limit, length)
        # The length is known and within the limit: read exactly that much.
        return stream.read(length)
    except ServingError:
        raise
    except Exception as error:  # the server's own framing errors (bad chunks, ...)
        raise InvalidBody(f"could not read the request body: {error}") from None


def read_json_body(limit: int) -> object:
    """Parse the request body as strict JSON, or raise a 4xx ServingError."""
    body = read_limited_body(limit)
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            "Content-Type must be application/json, "
            f"got {request.mimetype or 'nothing'!r}"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(f"request body is not valid JSON: {error}") from None
