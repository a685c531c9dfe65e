import dataclasses
import io
import json
import logging
import os
import sys
from contextlib import contextmanager

import pytest

from serving.app import create_app
from serving.telemetry import JsonFormatter, current_request_id
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


def test_access_log_is_one_json_line_with_id_route_status_and_latency(client, capfd):
    client.post("/predict", json={"features": [1]}, headers={"X-Request-ID": "r1"})
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    (line,) = [entry for entry in lines if entry.get("request_id") == "r1"]
    assert line["route"] == "/predict" and line["method"] == "POST"
    assert line["path"] == "/predict" and line["status"] == 422
    assert 0 < line["latency_ms"] < 5000
    assert line["level"] == "info" and line["pid"] == os.getpid()


def test_access_log_can_be_switched_off(serve_config, predictor, capfd):
    config = dataclasses.replace(serve_config, access_log=False)
    client = create_app(config, predictor=predictor).test_client()
    capfd.readouterr()
    response = client.post(
        "/predict", json={"features": ZERO_ROW}, headers={"X-Request-ID": "r2"}
    )
    assert response.status_code == 200
    assert "r2" not in capfd.readouterr().err


def test_access_lines_follow_the_log_level(serve_config, predictor, capfd):
    config = dataclasses.replace(serve_config, log_level="error")
    client = create_app(config, predictor=predictor).test_client()
    capfd.readouterr()
    client.post("/predict", json={"features": ZERO_ROW}, headers={"X-Request-ID": "r3"})
    assert "r3" not in capfd.readouterr().err


def test_stderr_without_a_file_still_gets_the_line(client, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    response = client.get("/healthz", headers={"X-Request-ID": "r4"})
    assert response.status_code == 200
    assert json.loads(stream.getvalue())["request_id"] == "r4"


def test_a_failing_stderr_never_fails_the_request(client, monkeypatch):
    def broken_write(fd, data):
        raise BrokenPipeError("nobody reads stderr")

    monkeypatch.setattr(os, "write", broken_write)
    response = client.post("/predict", json={"features": ZERO_ROW})
    assert response.status_code == 200


def test_long_and_non_ascii_paths_are_logged_readably(client, capfd):
    client.get("/caf%C3%A9/" + "x" * 5000, headers={"X-Request-ID": "r5"})
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    (line,) = [entry for entry in lines if entry.get("request_id") == "r5"]
    assert line["path"].startswith("/café/") and len(line["path"]) == 512
    assert line["status"] == 404


def test_request_id_outside_a_request_is_a_dash():
    assert current_request_id() == "-"


def test_unhandled_errors_are_logged_with_the_traceback(serve_config, predictor):
    client = create_app(serve_config, exploding(predictor), warm=False).test_client()
    with records_of("serving.http") as records:
        client.post(
            "/predict", json={"features": ZERO_ROW}, headers={"X-Request-ID": "e1"}
        )
    (record,) = records
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "e1" and line["path"] == "/predict"
    assert "secret internal detail" in line["exception"]
