import json
import logging
from contextlib import contextmanager

import pytest

from serving.app import create_app
from serving.logs import JsonFormatter
from tests.test_app import exploding

ZERO_ROW = [0.0] * 64


@contextmanager
def records_of(logger_name: str):
    """Collect the records `logger_name` emits (the app's loggers don't propagate)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-42.a"})
    assert response.headers["X-Request-ID"] == "trace-42.a"


@pytest.mark.parametrize("offered", [None, "", "bad id with spaces", "x" * 200])
def test_missing_or_unsafe_request_ids_are_replaced(client, offered):
    headers = {"X-Request-ID": offered} if offered is not None else {}
    response = client.post("/predict", json={"features": ZERO_ROW}, headers=headers)
    generated = response.headers["X-Request-ID"]
    assert generated != offered and len(generated) == 32
    other = client.post("/predict", json={"features": ZERO_ROW}, headers=headers)
    assert other.headers["X-Request-ID"] != generated


def test_error_responses_carry_the_request_id_too(client):
    response = client.get("/nowhere", headers={"X-Request-ID": "abc"})
    assert response.status_code == 404 and response.headers["X-Request-ID"] == "abc"


def test_access_log_is_json_with_id_route_status_and_latency(client):
    with records_of("serving.access") as records:
        client.post("/predict", json={"features": [1]}, headers={"X-Request-ID": "r1"})
    (record,) = records
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "r1"
    assert line["route"] == "/predict" and line["method"] == "POST"
    assert line["status"] == 422
    assert 0 < line["latency_ms"] < 5000
    assert line["level"] == "info" and isinstance(line["pid"], int)


def test_unhandled_errors_are_logged_with_the_traceback(serve_config, predictor):
    client = create_app(serve_config, exploding(predictor), warm=False).test_client()
    with records_of("serving.app") as records:
        client.post(
            "/predict", json={"features": ZERO_ROW}, headers={"X-Request-ID": "e1"}
        )
    (record,) = records
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "e1" and line["path"] == "/predict"
    assert "secret internal detail" in line["exception"]
