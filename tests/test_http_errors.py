"""Malformed HTTP never reaches the app: the server's own answer, documented.

granian parses HTTP in Rust (hyper) and rejects a malformed request line or
header block before the app runs, with an empty-bodied `400 Bad Request` and
`connection: close`, or by closing the connection (an unparsable URI, a head
over its buffer). Those answers cannot be given the JSON error shape without
patching the server, so the README documents them; these tests pin them down:
never HTML, never a 5xx, and the server keeps serving.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import serving_process

SOCKET_TIMEOUT_S = 5
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raw_request(*lines: bytes, body: bytes = b"") -> bytes:
    """Join a request line and header lines into one raw HTTP/1.1 request."""
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# (id, raw request). Each is refused by the HTTP parser, before the app.
MALFORMED = [
    ("bad_request_line", b"GARBAGE\r\n\r\n"),
    ("http_9_9", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
    (
        "unsupported_transfer_encoding",
        raw_request(b"POST /predict HTTP/1.1", b"Host: x", b"Transfer-Encoding: br"),
    ),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    (
        "header_without_colon",
        raw_request(b"GET /healthz HTTP/1.1", b"Host: x", b"NoColonHere"),
    ),
    (
        "content_length_not_a_number",
        raw_request(b"POST /predict HTTP/1.1", b"Host: x", b"Content-Length: abc"),
    ),
    (
        "content_length_negative",
        raw_request(b"POST /predict HTTP/1.1", b"Host: x", b"Content-Length: -1"),
    ),
    (
        "url_too_long",
        raw_request(
            b"GET /" + b"a" * 4_000_000 + b" HTTP/1.1", b"Host: x", b"Connection: close"
        ),
    ),
    (
        "header_block_too_large",
        raw_request(
            b"GET /healthz HTTP/1.1",
            b"Host: x",
            b"Connection: close",
            b"X-Big: " + b"a" * 4_000_000,
        ),
    ),
]


# What hyper answers itself: no body, connection closed.
PARSER_STATUS_LINES = {
    "HTTP/1.1 400 Bad Request",
    "HTTP/1.1 414 URI Too Long",
    "HTTP/1.1 431 Request Header Fields Too Large",
}


def read_all(connection: socket.socket) -> bytes:
    """Read until the server closes the connection (or resets it)."""
    data = b""
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_response(connection: socket.socket) -> bytes:
    """Read exactly one response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes on a fresh connection; return all the server sent back."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S
    ) as connection:
        try:
            connection.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending: what came back counts
        return read_all(connection)


def assert_still_serving(port: int) -> None:
    """A normal request on a new connection still succeeds."""
    reply = exchange(
        port, HEALTHZ.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(body) == {"status": "ok"}


@pytest.fixture(scope="module")
def server_port(onnx_path, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("http-errors") / "server.log"
    with serving_process(onnx_path, log_path, workers=1) as (_, port):
        yield port


@pytest.mark.parametrize(
    "payload", [case[1] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_http_gets_the_servers_plain_400_or_a_close(server_port, payload):
    reply = exchange(server_port, payload)
    if reply:  # an answer: hyper's bare 4xx, never HTML, never a 5xx
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] in PARSER_STATUS_LINES
        headers = {
            line.split(":")[0].lower(): line.split(":")[1].strip() for line in lines[1:]
        }
        assert headers["connection"] == "close" and headers["content-length"] == "0"
        assert body == b""
    assert_still_serving(server_port)


def test_keep_alive_connection_then_malformed_request(server_port):
    with socket.create_connection(
        ("127.0.0.1", server_port), timeout=SOCKET_TIMEOUT_S
    ) as connection:
        connection.sendall(HEALTHZ)
        first = read_response(connection)
        assert first.startswith(b"HTTP/1.1 200 OK")
        assert b"connection: close" not in first.lower()  # kept alive
        connection.sendall(HEALTHZ)  # the same connection serves a second one
        assert read_response(connection).startswith(b"HTTP/1.1 200 OK")
        connection.sendall(b"GARBAGE\r\n\r\n")
        assert read_all(connection).startswith(b"HTTP/1.1 400 Bad Request")
    assert_still_serving(server_port)


def test_predictions_still_work_after_malformed_requests(server_port):
    for _, payload in MALFORMED:
        exchange(server_port, payload)
    body = json.dumps({"features": [0] * 64}).encode()
    predict = raw_request(
        b"POST /predict HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        body=body,
    )
    head, _, answer = exchange(server_port, predict).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert set(json.loads(answer)) == {"prediction", "confidence"}


def test_requests_the_parser_accepts_get_the_json_error_shape(server_port):
    """Odd but parsable requests reach the app and get its JSON errors."""
    cases = [
        (  # RFC 9112: Transfer-Encoding wins, Content-Length is dropped
            raw_request(
                b"POST /predict HTTP/1.1",
                b"Host: x",
                b"Connection: close",
                b"Content-Length: 5",
                b"Transfer-Encoding: chunked",
                body=b"0\r\n\r\n",
            ),
            415,
        ),
        (raw_request(b"GET /% HTTP/1.1", b"Host: x", b"Connection: close"), 404),
        (raw_request(b"GET /../../x HTTP/1.1", b"Host: x", b"Connection: close"), 404),
        (raw_request(b"BREW /predict HTTP/1.1", b"Host: x", b"Connection: close"), 405),
        # RFC 9112, 3.2: an HTTP/1.1 request has exactly one Host header.
        (raw_request(b"GET /healthz HTTP/1.1", b"Connection: close"), 400),
        (
            raw_request(
                b"GET /healthz HTTP/1.1", b"Host: a", b"Host: b", b"Connection: close"
            ),
            400,
        ),
        (
            raw_request(
                b"POST /predict HTTP/1.1",
                b"Host: x",
                b"Connection: close",
                b"Content-Type: application/json",
                b"Transfer-Encoding: chunked",
                body=b"zz\r\n{}\r\n0\r\n\r\n",
            ),
            400,
        ),
    ]
    for payload, status in cases:
        reply = exchange(server_port, payload)
        assert b"x-request-id:" in reply.lower()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), reply[:200]
        assert b"content-type: application/json" in head.lower()
        assert set(json.loads(body)["error"]) == {"code", "message", "details"}


def test_http_1_0_needs_no_host(server_port):
    reply = exchange(server_port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200 OK") or reply.startswith(b"HTTP/1.1 200 OK")
