"""JSON log lines: one object per line, easy for log shippers to parse."""

from __future__ import annotations

import logging
import sys
import time

import orjson
from gunicorn import glogging

# Attributes every LogRecord has; anything else came in through `extra=`.
STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record and its `extra` fields as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which gunicorn worker
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    """Send the service's logs to stderr as JSON lines at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("serving")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's own log (start-up, workers, bad requests) as JSON lines.

    gunicorn's access log stays off: the app writes one richer line per request
    (with its id and route). Configuring gunicorn through `logconfig_dict`
    instead would make it build, then drop, an access record per request.
    """

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self._access_log_enabled = False
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
