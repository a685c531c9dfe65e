"""Requests gunicorn rejects before Flask sees them still get the JSON error shape."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.gunicorn_workers import MAX_REASON_CHARS, render_json_error
from tests.conftest import REPO_ROOT
from tests.serve_env import serve_env_python
from tests.test_e2e import free_port, start_server, wait_until_listening

SOCKET_TIMEOUT_S = 5
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raw_request(*lines: bytes, body: bytes = b"") -> bytes:
    """Join a request line and header lines into one raw HTTP/1.1 request."""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# gunicorn's defaults: request line up to 4094 bytes, header lines up to 8190
# bytes, at most 100 header fields.
MALFORMED = [
    ("bad_request_line", b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (
        "unsupported_transfer_encoding",
        raw_request(b"POST /predict HTTP/1.1", b"Host: x", b"Transfer-Encoding: br"),
        501,
        "not_implemented",
    ),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad_request"),
    (
        "header_without_colon",
        raw_request(b"GET /healthz HTTP/1.1", b"Host: x", b"NoColonHere"),
        400,
        "bad_request",
    ),
    (
        "cr_in_header_value",
        raw_request(b"GET /healthz HTTP/1.1", b"Host: x", b"X-Note: a\rb"),
        400,
        "bad_request",
    ),
    (
        "content_length_not_a_number",
        raw_request(b"POST /predict HTTP/1.1", b"Host: x", b"Content-Length: abc"),
        400,
        "bad_request",
    ),
    (
        "content_length_negative",
        raw_request(b"POST /predict HTTP/1.1", b"Host: x", b"Content-Length: -1"),
        400,
        "bad_request",
    ),
    (
        "content_length_with_transfer_encoding",
        raw_request(
            b"POST /predict HTTP/1.1",
            b"Host: x",
            b"Content-Length: 5",
            b"Transfer-Encoding: chunked",
            body=b"0\r\n\r\n",
        ),
        400,
        "bad_request",
    ),
    (
        "two_content_types",
        raw_request(
            b"POST /predict HTTP/1.1",
            b"Host: x",
            b"Content-Type: application/json",
            b"Content-Type: text/plain",
            b"Content-Length: 2",
            body=b"{}",
        ),
        400,
        "bad_request",
    ),
    (
        "url_too_long",
        raw_request(b"GET /" + b"a" * 5000 + b" HTTP/1.1", b"Host: x"),
        414,
        "uri_too_long",
    ),
    (
        "header_too_large",
        raw_request(b"GET /healthz HTTP/1.1", b"Host: x", b"X-Big: " + b"a" * 9000),
        431,
        "request_header_fields_too_large",
    ),
    (
        "too_many_headers",
        raw_request(
            b"GET /healthz HTTP/1.1",
            b"Host: x",
            *(b"X-Field-%d: v" % number for number in range(120)),
        ),
        431,
        "request_header_fields_too_large",
    ),
]
REASONS = {
    400: b"Bad Request",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
}


def read_response(connection: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """Read one response from `connection`: (status line, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
    }
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed mid-body: {body!r}"
        body += chunk
    return status_line.encode("latin-1"), headers, body[:length]


def exchange(port: int, payload: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send raw bytes on a fresh connection and read one response."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S
    ) as connection:
        connection.sendall(payload)
        return read_response(connection)


def assert_json_error(
    response: tuple[bytes, dict[str, str], bytes], status: int, code: str
) -> None:
    """Check the status line, the JSON headers and the one error body shape."""
    status_line, headers, body = response
    assert status_line == b"HTTP/1.1 %d %s" % (status, REASONS[status])
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-request-id"]
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)


def assert_still_serving(port: int) -> None:
    """A normal request on a new connection still succeeds."""
    status_line, _, body = exchange(port, HEALTHZ)
    assert status_line == b"HTTP/1.1 200 OK"
    assert json.loads(body) == {"status": "ok"}


def run_server(
    onnx_path: Path, log_path: Path, threads: int
) -> Iterator[tuple[int, Path]]:
    """Run one single-worker server from the serve-only venv; yield (port, log)."""
    port = free_port()
    process = start_server(
        serve_env_python(),
        {
            "PORT": str(port),
            "SERVE_MODEL_PATH": str(onnx_path),
            "SERVE_WORKERS": "1",
            "SERVE_THREADS": str(threads),
        },
        log_path,
    )
    try:
        wait_until_listening(port, process, log_path)
        yield port, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def sync_server(onnx_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("sync-server") / "server.log"
    yield from run_server(onnx_path, log_path, threads=1)


@pytest.fixture(scope="module")
def gthread_server(onnx_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("gthread-server") / "server.log"
    yield from run_server(onnx_path, log_path, threads=2)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_sync_worker_answers_malformed_http_with_json(
    sync_server, payload, status, code
):
    port, _ = sync_server
    assert_json_error(exchange(port, payload), status, code)
    assert_still_serving(port)  # the one worker survived


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [case[1:] for case in MALFORMED if case[0] in {"bad_request_line", "url_too_long"}],
)
def test_gthread_worker_answers_malformed_http_with_json(
    gthread_server, payload, status, code
):
    port, _ = gthread_server
    assert_json_error(exchange(port, payload), status, code)
    assert_still_serving(port)


def test_gthread_keepalive_connection_then_malformed_request(gthread_server):
    port, _ = gthread_server
    with socket.create_connection(
        ("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S
    ) as connection:
        connection.sendall(HEALTHZ)
        status_line, headers, _ = read_response(connection)
        assert status_line == b"HTTP/1.1 200 OK"
        assert headers["connection"] == "keep-alive"
        connection.sendall(b"GARBAGE\r\n\r\n")
        assert_json_error(read_response(connection), 400, "bad_request")
    assert_still_serving(port)


def test_predictions_still_work_after_malformed_requests(sync_server):
    port, _ = sync_server
    for _, payload, _, _ in MALFORMED:
        exchange(port, payload)
    body = json.dumps({"features": [0] * 64}).encode()
    predict = raw_request(
        b"POST /predict HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        body=body,
    )
    status_line, _, answer = exchange(port, predict)
    assert status_line == b"HTTP/1.1 200 OK"
    assert set(json.loads(answer)) == {"prediction", "confidence"}


@pytest.mark.parametrize(
    ("server", "worker_class"),
    [
        ("sync_server", "SyncWorkerWithJsonErrors"),
        ("gthread_server", "ThreadWorkerWithJsonErrors"),
    ],
)
def test_server_runs_the_json_error_worker(request, server, worker_class):
    _, log_path = request.getfixturevalue(server)
    assert f"Using worker: serving.gunicorn_workers.{worker_class}" in (
        log_path.read_text()
    )


def test_worker_module_keeps_the_master_light():
    code = (
        "import sys, serving.gunicorn_workers; "
        "print(sorted({'onnxruntime', 'flask', 'serving.app'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [str(serve_env_python()), "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("status", "reason", "code"),
    [(408, "Request Timeout", "request_timeout"), (599, "Odd-Thing!", "odd_thing")],
)
def test_other_statuses_get_a_snake_case_code(status, reason, code):
    response = render_json_error(status, reason, "x" * 5000)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d %s\r\n" % (status, reason.encode()))
    assert b"Content-Length: %d\r\n" % len(body) in head
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert len(error["details"]["reason"]) == MAX_REASON_CHARS
