"""The production server, started as users start it, from a serve-only venv."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    free_port,
    request,
    start_server,
    wait_until_listening,
)
from tests.serve_env import serve_env_python


@pytest.fixture(scope="module")
def serve_python():
    return serve_env_python()


@pytest.fixture(scope="module")
def server(serve_python, onnx_path, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process = start_server(
        serve_python,
        {"PORT": str(port), "SERVE_MODEL_PATH": str(onnx_path), "SERVE_WORKERS": "2"},
        log_path,
    )
    try:
        wait_until_listening(port, process, log_path)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def test_serve_env_has_no_torch(serve_python):
    result = subprocess.run(
        [
            str(serve_python),
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "None"


def test_real_http_predictions(server, digits):
    base, _ = server
    features, labels = digits
    correct = 0
    for row, label in zip(features[:30], labels[:30], strict=True):
        body = json.dumps({"features": row.tolist()}).encode()
        status, answer = request(f"{base}/predict", body)
        assert status == 200 and set(answer) == {"prediction", "confidence"}
        correct += answer["prediction"] == label
    assert correct >= 28


def test_real_http_errors_are_json(server):
    base, _ = server
    status, answer = request(f"{base}/predict", b'{"features": [1, 2, 3]}')
    assert status == 422 and answer["error"]["code"] == "invalid_request"
    status, answer = request(f"{base}/predict", b"{", "application/json")
    assert status == 400 and answer["error"]["code"] == "invalid_json"
    status, answer = request(f"{base}/missing")
    assert status == 404 and answer["error"]["code"] == "not_found"


def test_sigterm_stops_the_server_promptly(serve_python, onnx_path, tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    process = start_server(
        serve_python, {"PORT": str(port), "SERVE_MODEL_PATH": str(onnx_path)}, log_path
    )
    wait_until_listening(port, process, log_path)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert time.monotonic() - started <= 2.0


def test_missing_model_refuses_to_start_with_one_line(serve_python, tmp_path):
    log_path = tmp_path / "server.log"
    missing = {"PORT": str(free_port()), "SERVE_MODEL_PATH": str(tmp_path / "x.onnx")}
    process = start_server(serve_python, missing, log_path)
    assert process.wait(timeout=30) != 0
    assert log_path.read_text().strip().splitlines() == [
        f"error: model file not found: {tmp_path / 'x.onnx'} "
        "(create it with `python -m training.export`, or set SERVE_MODEL_PATH)"
    ]


@pytest.mark.parametrize(
    ("metrics_dir", "reason"),
    [
        ("file", "File exists"),  # a path that is a file
        ("file/inside", "Not a directory"),
    ],
)
def test_an_unusable_metrics_directory_refuses_to_start_with_one_line(
    serve_python, onnx_path, tmp_path, metrics_dir, reason
):
    (tmp_path / "file").write_text("not a directory")
    log_path = tmp_path / "server.log"
    settings = {
        "PORT": str(free_port()),
        "SERVE_MODEL_PATH": str(onnx_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / metrics_dir),
    }
    process = start_server(serve_python, settings, log_path)
    assert process.wait(timeout=30) != 0
    (line,) = log_path.read_text().strip().splitlines()
    assert line.startswith(f"error: cannot use '{tmp_path / metrics_dir}' for the")
    assert reason in line and "writable" in line


def predict_200_count(base: str) -> float:
    """Read /predict 200s from /metrics, as a scraper would."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "digits_http_requests_total" and sample.labels == {
                "endpoint": "/predict",
                "method": "POST",
                "status": "200",
            }:
                return sample.value
    return 0.0


def test_metrics_sum_over_both_workers(server, digits):
    base, log_path = server
    before = predict_200_count(base)
    bodies = [json.dumps({"features": row.tolist()}).encode() for row in digits[0][:40]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda b: request(f"{base}/predict", b)[0], bodies))
    assert statuses == [200] * 40
    assert predict_200_count(base) == before + 40
    access_pids = {
        line["pid"]
        for line in map(json.loads, re.findall(r"^\{.*\}$", log_path.read_text(), re.M))
        if line.get("route") == "/predict"
    }
    assert len(access_pids) == 2  # both workers served, and both were counted


def test_oversized_body_gets_a_json_413_and_the_server_keeps_serving(server):
    base, _ = server
    body = b'{"instances": [' + b"0," * (3 * 1024 * 1024) + b"0]}"
    status, answer = request(f"{base}/predict/batch", body)
    assert status == 413 and answer["error"]["code"] == "payload_too_large"
    status, _ = request(f"{base}/predict", json.dumps({"features": [0] * 64}).encode())
    assert status == 200


def test_readiness_and_metadata_over_http(server):
    base, _ = server
    assert request(f"{base}/readyz") == (200, {"status": "ready"})
    status, model = request(f"{base}/model")
    assert status == 200 and model["input"]["shape"] == ["batch", 64]


def test_sigterm_lets_the_in_flight_request_finish(
    serve_python, onnx_path, tmp_path, digits
):
    port = free_port()
    log_path = tmp_path / "server.log"
    process = start_server(
        serve_python,
        {"PORT": str(port), "SERVE_MODEL_PATH": str(onnx_path), "SERVE_WORKERS": "1"},
        log_path,
    )
    wait_until_listening(port, process, log_path)
    features, labels = digits
    body = json.dumps({"features": features[9].tolist()}).encode()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(head + body[:20])
        time.sleep(0.3)  # the worker is now inside the request, waiting for body
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        connection.sendall(body[20:])
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK"
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["prediction"] == labels[9]
    assert process.wait(timeout=5) == 0
    assert time.monotonic() - stopping <= 2.0


def raw_exchange(base: str, payload: bytes) -> tuple[str, dict]:
    """Send raw bytes to the server; return the status line and the JSON body."""
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(payload)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), json.loads(body)


def chunked_post(path: str, body: bytes, chunk_size: int = 65536) -> bytes:
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part)
        for part in (body[i : i + chunk_size] for i in range(0, len(body), chunk_size))
    )
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )


def test_chunked_uploads_are_read_within_the_limit(server):
    base, _ = server
    body = json.dumps({"features": [0] * 64}).encode()
    status, answer = raw_exchange(base, chunked_post("/predict", body))
    assert status == "HTTP/1.1 200 OK" and set(answer) == {"prediction", "confidence"}
    padded = body + b" " * (3 * 1024 * 1024)  # valid JSON, but over 2 MiB
    status, answer = raw_exchange(base, chunked_post("/predict", padded))
    assert status.startswith("HTTP/1.1 413")
    assert answer["error"]["code"] == "payload_too_large"


def test_malformed_chunked_body_is_a_json_400(server):
    # The server cuts a body at its broken chunk; what arrives is not JSON.
    base, _ = server
    payload = chunked_post("/predict", b"{}").replace(b"2\r\n{}", b"zz\r\n{}")
    status, answer = raw_exchange(base, payload)
    assert status.startswith("HTTP/1.1 400")
    assert answer["error"]["code"] == "invalid_json"
    assert request(f"{base}/readyz") == (200, {"status": "ready"})
