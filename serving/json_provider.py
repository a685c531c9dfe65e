"""Flask JSON provider backed by orjson.

orjson parses strict RFC 8259 JSON: it refuses NaN, Infinity and numbers too
large for a double (1e400), which Python's json module would turn into floats
and let through; it is also several times faster on number arrays.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import JSONProvider


class OrjsonProvider(JSONProvider):
    """Serialise responses and parse requests with orjson."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any):
        """Build a JSON response without a str round trip."""
        obj = self._prepare_response_obj(args, kwargs)
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        return self._app.response_class(body, mimetype=self.mimetype)
