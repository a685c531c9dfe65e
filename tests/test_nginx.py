"""deploy/nginx/default.conf in a real nginx, run natively, in front of a real API.

The server block under test is the very file Compose mounts as the image's
conf.d/default.conf, with two lines changed by `server_block()` and nothing
else: `listen 8080` becomes a free port on 127.0.0.1, and the upstream
`http://api:8000` (a Docker service name) becomes this test's upstream, either
the real `python -m serving` or an upstream{} group of fake replicas. nginx
looks a variable's host name up among the upstream{} groups before asking its
resolver, so the Docker resolver line stays as it is, unused.

The main config around it is generated here (foreground, files under a
temporary prefix) with the worker and connection limits of the main config
Compose mounts, deploy/nginx/nginx.conf, copied from that file.

Debian's nginx package must be installed (`make test` installs it when
missing): without it these tests fail, they never skip. Every load is bounded
in count and time, on loopback only.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.nginx_native import (
    HOST,
    NGINX_CONF,
    NginxMissing,
)
from scripts.nginx_native import running_nginx as native_nginx
from serving.config import ServeConfig
from tests.conftest import free_port, serving_process

LOG_WAIT_S = 3

PREDICT_BODY = json.dumps({"features": [0] * 64}).encode()
API_BODY_LIMIT = ServeConfig().max_content_length
NGINX_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
SLOW_HEADER_CONNECTIONS = 500
STALLED_BODY_CONNECTIONS = 500
NORMAL_REQUESTS = 20
TRICKLE_INTERVAL_S = 0.5


# --- the config under test ---------------------------------------------------


def config_value(directive: str) -> str:
    """The value of the one `directive value;` line of deploy/nginx/default.conf."""
    text = NGINX_CONF.read_text()
    (value,) = re.findall(rf"^\s*{directive}\s+(\S+);", text, re.MULTILINE)
    return value


def config_seconds(directive: str) -> float:
    """A duration of deploy/nginx/default.conf, which writes them all as `<n>s`."""
    value = config_value(directive)
    assert re.fullmatch(r"\d+s", value), f"{directive} {value}"
    return float(value[:-1])


# --- running nginx and the API ---------------------------------------------


def wait_for_log_entry(log: Path, request_id: str) -> dict:
    """The JSON line of `request_id` in `log`, once its writer has written it."""
    deadline = time.monotonic() + LOG_WAIT_S
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if entry.get("request_id") == request_id:
                return entry
        time.sleep(0.05)
    raise AssertionError(f"no line for request id {request_id} in {log}")


@dataclass
class Server:
    port: int
    access_log: Path  # JSON lines, one per request

    def access_entry(self, request_id: str) -> dict:
        return wait_for_log_entry(self.access_log, request_id)


@dataclass
class Nginx(Server):
    error_log: Path  # nginx's own text lines


@contextmanager
def running_nginx(
    directory: Path, upstream: str, replica_groups: dict[str, list[int]] | None = None
) -> Iterator[Nginx]:
    """The project's nginx natively (scripts/nginx_native.py); stopped after."""
    try:
        with native_nginx(directory, upstream, replica_groups) as native:
            yield Nginx(native.port, native.access_log, native.error_log)
    except NginxMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="module")
def api(onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real API (its access lines go to its log)."""
    log = tmp_path_factory.mktemp("api") / "api.log"
    with serving_process(onnx_path, log, workers=1) as (_, port):
        yield Server(port, log)


@pytest.fixture(scope="module")
def proxy(api: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx in front of the real API, shared by the tests that only ask it."""
    directory = tmp_path_factory.mktemp("proxy")
    with running_nginx(directory, f"http://{HOST}:{api.port}") as nginx:
        yield nginx


# --- HTTP exchanges ----------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error(self) -> dict:
        """The `error` object of a JSON error body, checked for its shape."""
        assert self.headers["Content-Type"] == "application/json", self.body[:300]
        error = json.loads(self.body)["error"]
        assert set(error) == {"code", "message", "details"}, error
        assert isinstance(error["details"], dict)
        return error

    def generated_request_id(self) -> str:
        """The X-Request-ID, checked to be one nginx made (32 hex digits)."""
        request_id = self.headers.get("X-Request-ID", "")
        assert NGINX_REQUEST_ID.fullmatch(request_id), request_id
        return request_id


def exchange(port: int, raw: bytes, timeout: float = 5) -> Answer:
    """Send raw bytes on a new connection and read the one answer."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # nginx answered before reading it all; the answer is still there
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return Answer(response.status, response.headers, response.read())
        finally:
            response.close()


def raw_request(line: str, *headers: str, body: bytes = b"") -> bytes:
    """A request line, header lines and a body, as bytes on the wire."""
    head = "".join(f"{text}\r\n" for text in (line, *headers)) + "\r\n"
    return head.encode() + body


def post(
    port: int, path: str, body: bytes, *headers: str, timeout: float = 5
) -> Answer:
    return exchange(
        port,
        raw_request(
            f"POST {path} HTTP/1.1",
            f"Host: {HOST}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *headers,
            body=body,
        ),
        timeout,
    )


def get(port: int, path: str, *headers: str) -> Answer:
    return exchange(
        port, raw_request(f"GET {path} HTTP/1.1", f"Host: {HOST}", *headers)
    )


def timed(call: Callable[[], Answer]) -> tuple[Answer, float]:
    started = time.perf_counter()
    answer = call()
    return answer, time.perf_counter() - started


def predict_body_of_size(size: int) -> bytes:
    """A valid /predict body padded with JSON whitespace to exactly `size` bytes."""
    return PREDICT_BODY + b" " * (size - len(PREDICT_BODY))


def chunked(body: bytes, chunk_size: int = 64 * 1024) -> bytes:
    pieces = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


# --- nginx's own errors: JSON in the API's shape, never HTML, never a 500 ---

HOST_HEADER = f"Host: {HOST}"
REFUSED_REQUESTS = {
    # Before the fix these three were a 500 HTML page: no URI, no named location.
    "garbage-line": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "bad-escape": (raw_request("GET /% HTTP/1.1", HOST_HEADER), 400, "bad_request"),
    "above-root": (
        raw_request("GET /../../x HTTP/1.1", HOST_HEADER),
        400,
        "bad_request",
    ),
    "10kb-uri": (
        raw_request(f"GET /{'a' * 10240} HTTP/1.1", HOST_HEADER),
        414,
        "request_uri_too_large",
    ),
    "http-9.9": (
        raw_request("GET / HTTP/9.9", HOST_HEADER),
        505,
        "http_version_not_supported",
    ),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad_request"),
    "no-host": (raw_request("GET / HTTP/1.1"), 400, "bad_request"),
    "two-hosts": (
        raw_request("GET / HTTP/1.1", HOST_HEADER, "Host: other"),
        400,
        "bad_request",
    ),
    "20kb-header": (  # nginx's 494, answered as a 400
        raw_request("GET / HTTP/1.1", HOST_HEADER, f"X-Big: {'a' * 20000}"),
        400,
        "bad_request",
    ),
    "bad-content-length": (
        raw_request("POST /predict HTTP/1.1", HOST_HEADER, "Content-Length: abc"),
        400,
        "bad_request",
    ),
    "length-and-chunked": (
        raw_request(
            "POST /predict HTTP/1.1",
            HOST_HEADER,
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            body=b"0\r\n\r\n",
        ),
        400,
        "bad_request",
    ),
    "broken-chunk": (
        raw_request(
            "POST /predict HTTP/1.1",
            HOST_HEADER,
            "Transfer-Encoding: chunked",
            body=b"zz\r\n",
        ),
        400,
        "bad_request",
    ),
    "transfer-encoding-br": (
        raw_request("POST /predict HTTP/1.1", HOST_HEADER, "Transfer-Encoding: br"),
        501,
        "not_implemented",
    ),
    "trace": (raw_request("TRACE / HTTP/1.1", HOST_HEADER), 405, "method_not_allowed"),
    "declared-too-large": (
        raw_request(
            "POST /predict HTTP/1.1",
            HOST_HEADER,
            f"Content-Length: {API_BODY_LIMIT + 1}",
        ),
        413,
        "payload_too_large",
    ),
    "chunked-too-large": (
        raw_request(
            "POST /predict HTTP/1.1",
            HOST_HEADER,
            "Transfer-Encoding: chunked",
            body=chunked(b" " * (API_BODY_LIMIT + 1)),
        ),
        413,
        "payload_too_large",
    ),
    "error-location-asked-directly": (
        raw_request("GET /.nginx-errors/bad_request HTTP/1.1", HOST_HEADER),
        404,
        "not_found",
    ),
}


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [pytest.param(*case, id=name) for name, case in REFUSED_REQUESTS.items()],
)
def test_nginx_answers_what_it_refuses_in_json_with_a_request_id(
    proxy: Nginx, raw: bytes, status: int, code: str
):
    answer = exchange(proxy.port, raw)
    assert answer.status == status, answer.body[:300]
    assert answer.error()["code"] == code
    assert answer.headers["X-Error-Code"] == code
    request_id = answer.generated_request_id()
    # The id leads to nginx's log line of that request, which never reached the API.
    entry = proxy.access_entry(request_id)
    assert (entry["status"], entry["upstream"]) == (status, "")


def test_nginx_passes_a_body_at_the_api_limit_and_refuses_one_byte_more(
    proxy: Nginx,
):
    at_limit = post(proxy.port, "/predict", predict_body_of_size(API_BODY_LIMIT))
    assert at_limit.status == 200, at_limit.body[:300]
    over = post(proxy.port, "/predict", predict_body_of_size(API_BODY_LIMIT + 1))
    assert over.status == 413
    error = over.error()
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit_bytes": API_BODY_LIMIT}
    entry = proxy.access_entry(over.generated_request_id())
    # Logged as sent, though error_page turns every method into GET.
    assert (entry["method"], entry["upstream"]) == ("POST", "")


# --- the request id ------------------------------------------------------------


def test_nginx_request_id_reaches_the_api_the_client_and_both_logs(
    proxy: Nginx, api: Server
):
    answer = get(proxy.port, "/readyz")
    assert answer.status == 200
    request_id = answer.generated_request_id()
    assert api.access_entry(request_id)["path"] == "/readyz"
    entry = proxy.access_entry(request_id)
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/readyz", 200)
    assert entry["upstream"] == f"{HOST}:{api.port}"


def test_a_plain_client_request_id_is_kept_end_to_end(proxy: Nginx, api: Server):
    offered = "client-7.a:b_c"
    answer = post(proxy.port, "/predict", PREDICT_BODY, f"X-Request-ID: {offered}")
    assert answer.status == 200
    assert answer.headers["X-Request-ID"] == offered
    assert api.access_entry(offered)["path"] == "/predict"
    assert proxy.access_entry(offered)["status"] == 200


def test_nginx_own_errors_keep_a_plain_client_request_id(proxy: Nginx):
    offered = "client-refused-1"
    answer = exchange(
        proxy.port,
        raw_request(
            "POST /predict HTTP/1.1",
            HOST_HEADER,
            f"X-Request-ID: {offered}",
            f"Content-Length: {API_BODY_LIMIT + 1}",
        ),
    )
    assert answer.status == 413
    assert answer.headers["X-Request-ID"] == offered
    assert proxy.access_entry(offered)["status"] == 413


@pytest.mark.parametrize("offered", ["has spaces", "x" * 129, 'quote"d'])
def test_a_client_request_id_the_api_would_refuse_is_replaced_by_nginx(
    proxy: Nginx, api: Server, offered: str
):
    answer = get(proxy.port, "/readyz", f"X-Request-ID: {offered}")
    request_id = answer.generated_request_id()
    assert api.access_entry(request_id)["path"] == "/readyz"
    assert proxy.access_entry(request_id)["status"] == 200


# --- retries on other replicas: bounded ----------------------------------------


class FakeReplicas:
    """Listening sockets on loopback that take connections and never answer.

    With `hang`, each connection is held open in silence (a replica stuck in a
    request); otherwise it is closed at once (a replica dying mid-request).
    """

    def __init__(self, count: int, hang: bool) -> None:
        self.hang = hang
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        for _ in range(count):
            listener = socket.create_server((HOST, 0), backlog=16)
            self._selector.register(listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def ports(self) -> list[int]:
        return [key.fileobj.getsockname()[1] for key in self._listeners()]

    def _listeners(self) -> list[selectors.SelectorKey]:
        return list(self._selector.get_map().values())

    def _accept(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                connection, _ = key.fileobj.accept()
                self.accepted += 1
                if self.hang:
                    self._held.append(connection)
                else:
                    connection.close()

    def __enter__(self) -> FakeReplicas:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()
        for key in self._listeners():
            key.fileobj.close()
        self._selector.close()


def test_hung_replicas_cost_one_read_timeout_and_only_one_replica(tmp_path: Path):
    read_timeout = config_seconds("proxy_read_timeout")
    retry_window = config_seconds("proxy_next_upstream_timeout")
    # The bound deploy/nginx/default.conf states for a request whose replicas hang.
    stated_bound = retry_window + config_seconds("proxy_connect_timeout") + read_timeout
    # What keeps a hung replica from being retried: its timeout ends after the
    # window in which nginx may still try another replica.
    assert read_timeout > retry_window
    with ExitStack() as stack:
        replicas = stack.enter_context(FakeReplicas(3, hang=True))
        group = {"replicas": replicas.ports}
        nginx = stack.enter_context(running_nginx(tmp_path, "http://replicas", group))
        answer, seconds = timed(
            lambda: post(nginx.port, "/predict", PREDICT_BODY, timeout=stated_bound)
        )
        assert answer.status == 504
        assert answer.error()["code"] == "upstream_timeout"
        answer.generated_request_id()
        assert read_timeout <= seconds < min(read_timeout + 2, stated_bound), seconds
        assert replicas.accepted == 1  # before the fix: all 3, 35 s each


def test_failing_replicas_are_retried_on_a_bounded_number_of_them(tmp_path: Path):
    tries = int(config_value("proxy_next_upstream_tries"))
    with ExitStack() as stack:
        replicas = stack.enter_context(FakeReplicas(tries + 2, hang=False))
        group = {"replicas": replicas.ports}
        nginx = stack.enter_context(running_nginx(tmp_path, "http://replicas", group))
        answer, seconds = timed(lambda: post(nginx.port, "/predict", PREDICT_BODY))
        assert answer.status == 503
        assert answer.error()["code"] == "unavailable"
        assert replicas.accepted == tries
        assert seconds < 1.0


def test_a_post_goes_on_to_the_next_replica_when_one_refuses(
    tmp_path: Path, api: Server
):
    refusing = free_port()  # nothing listens there: connections are refused
    group = {"replicas": [refusing, api.port]}
    with running_nginx(tmp_path, "http://replicas", group) as nginx:
        answers = [post(nginx.port, "/predict", PREDICT_BODY) for _ in range(4)]
        entries = [nginx.access_entry(a.headers["X-Request-ID"]) for a in answers]
    assert [answer.status for answer in answers] == [200] * 4
    # At least one went to the refusing replica first, then on to the API.
    tried = [entry["upstream"] for entry in entries]
    assert f"{HOST}:{refusing}, {HOST}:{api.port}" in tried, tried


# --- slow clients ------------------------------------------------------------


def ensure_open_files(needed: int) -> None:
    """Raise this process's (and so nginx's) descriptor limit to `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"needs {needed} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class SlowClients:
    """Connections that trickle their headers, or stall in mid-body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.trickling: list[socket.socket] = []
        self.stalled: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def open(self, trickling: int, stalled: int) -> None:
        for _ in range(trickling):
            self.trickling.append(self._connect())
            self.trickling[-1].sendall(unfinished_head())
        for _ in range(stalled):
            self.stalled.append(self._connect())
            self.stalled[-1].sendall(predict_cut_in_its_body(sent=10))
        self._thread.start()

    def _connect(self) -> socket.socket:
        return socket.create_connection((HOST, self.port), timeout=5)

    def _trickle(self) -> None:
        """One more header line on every trickling connection, again and again."""
        while not self._stop.wait(TRICKLE_INTERVAL_S):
            for sock in self.trickling:
                try:
                    sock.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass  # already cut by nginx

    def closed_by_server(self) -> int:
        """How many of them nginx has closed, without an answer."""
        closed = 0
        for sock in self.trickling + self.stalled:
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue  # still open
            except ConnectionResetError:
                data = b""
            assert data == b"", data[:300]
            closed += 1
        return closed

    def __enter__(self) -> SlowClients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for sock in self.trickling + self.stalled:
            sock.close()


def unfinished_head() -> bytes:
    """Request headers without the empty line that would end them."""
    return raw_request("POST /predict HTTP/1.1", HOST_HEADER)[: -len(b"\r\n")]


def predict_cut_in_its_body(sent: int) -> bytes:
    """A whole /predict request but for its body, of which only `sent` bytes."""
    whole = raw_request(
        "POST /predict HTTP/1.1",
        HOST_HEADER,
        "Content-Type: application/json",
        f"Content-Length: {len(PREDICT_BODY)}",
        body=PREDICT_BODY,
    )
    return whole[: len(whole) - len(PREDICT_BODY) + sent]


def timed_predict(port: int) -> tuple[int | str, float]:
    """One /predict on a new connection: (status, or the error, and seconds)."""
    try:
        answer, seconds = timed(lambda: post(port, "/predict", PREDICT_BODY))
        return answer.status, seconds
    except OSError as error:
        return repr(error), 0.0


def test_slow_clients_neither_delay_normal_requests_nor_stay(
    tmp_path: Path, api: Server
):
    slow_total = SLOW_HEADER_CONNECTIONS + STALLED_BODY_CONNECTIONS
    ensure_open_files(2 * slow_total + 256)  # both ends are on this machine
    # The trickling clients keep sending: the header timeout counts from their
    # first byte, not their last. The stalled ones stopped at once.
    cut_after = max(
        config_seconds("client_header_timeout"), config_seconds("client_body_timeout")
    )
    upstream = f"http://{HOST}:{api.port}"
    with running_nginx(tmp_path, upstream) as nginx, SlowClients(nginx.port) as slow:
        opened = time.monotonic()
        slow.open(SLOW_HEADER_CONNECTIONS, STALLED_BODY_CONNECTIONS)
        results = [timed_predict(nginx.port) for _ in range(NORMAL_REQUESTS)]
        time.sleep(max(0.0, opened + cut_after + 1.5 - time.monotonic()))
        closed = slow.closed_by_server()
        errors = nginx.error_log.read_text()
    assert [status for status, _ in results] == [200] * NORMAL_REQUESTS
    assert max(seconds for _, seconds in results) < 1.0, results
    assert closed == slow_total
    assert "worker_connections are not enough" not in errors


def test_nginx_answers_the_protocol_paths_in_the_protocols_shape(proxy: Nginx):
    """tritonclient and kserve read {"error": "<message>"} on /v1 and /v2 paths."""
    too_large = raw_request(
        "POST /v2/models/digits-mlp/infer HTTP/1.1",
        HOST_HEADER,
        f"Content-Length: {API_BODY_LIMIT + 1}",
    )
    for raw in (
        too_large,
        raw_request(
            "POST /v1/models/digits-mlp:predict HTTP/1.1",
            HOST_HEADER,
            "Transfer-Encoding: br",
        ),
    ):
        answer = exchange(proxy.port, raw)
        assert answer.status in (413, 501), answer.body[:300]
        body = json.loads(answer.body)
        assert set(body) == {"error"} and isinstance(body["error"], str)
        assert answer.headers["X-Error-Code"] in {
            "payload_too_large",
            "not_implemented",
        }
        assert NGINX_REQUEST_ID.fullmatch(answer.headers["X-Request-ID"])
    # Other paths keep the service's own shape, and so does a request line
    # nginx cannot parse (it has no path to go by).
    plain = exchange(
        proxy.port, too_large.replace(b"/v2/models/digits-mlp/infer", b"/predict")
    )
    assert plain.error()["code"] == "payload_too_large"
