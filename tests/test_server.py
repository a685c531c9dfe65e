"""The HTTP server as users run it: slow clients, signals, reloads, worker exits.

Every server here is a real `python -m serving` from the serve-only venv on
127.0.0.1; every load is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    REPO_ROOT,
    free_port,
    serving_process,
    start_server,
)
from tests.serve_env import serve_env_python

PREDICT_BODY = json.dumps({"features": [0] * 64}).encode()
SLOW_HEADER_CONNECTIONS = 200
STALLED_BODY_CONNECTIONS = 16
NORMAL_REQUESTS = 20

REPLACE_TIMEOUT_S = 30


def predict_on(connection: http.client.HTTPConnection) -> int:
    """POST one valid /predict on `connection`; return the status."""
    connection.request(
        "POST", "/predict", PREDICT_BODY, {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    response.read()
    return response.status


def timed_predict(port: int) -> tuple[int, float]:
    """One /predict on a new connection: (status, seconds)."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        return predict_on(connection), time.perf_counter() - started
    finally:
        connection.close()


def metric_samples(port: int) -> list:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def is_running(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> set[int]:
    """The worker processes of server `pid` (not multiprocessing's helpers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as file:
            children = {int(child) for child in file.read().split()}
    except FileNotFoundError:
        return set()
    workers = set()
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as file:
                if b"resource_tracker" not in file.read() and is_running(child):
                    workers.add(child)
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited meanwhile
    return workers


@pytest.fixture()
def running_server(onnx_path, tmp_path):
    """A 2-worker server: (process, port, log path)."""
    log_path = tmp_path / "server.log"
    with serving_process(onnx_path, log_path, workers=2) as (process, port):
        yield process, port, log_path


def test_slow_clients_do_not_delay_normal_requests(running_server):
    _, port, _ = running_server
    stalled: list[socket.socket] = []
    try:
        for _ in range(SLOW_HEADER_CONNECTIONS):  # headers trickling, never ended
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            stalled.append(sock)
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(PREDICT_BODY)}\r\n\r\n"
        ).encode()
        for _ in range(STALLED_BODY_CONNECTIONS):  # stopped in mid-body
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(head + PREDICT_BODY[:10])
            stalled.append(sock)
        time.sleep(0.5)  # let the server take them all in
        for sock in stalled[:50]:  # keep trickling on some of them
            sock.sendall(b"X-Slow: 1\r\n")
        results = [timed_predict(port) for _ in range(NORMAL_REQUESTS)]
    finally:
        for sock in stalled:
            sock.close()
    assert [status for status, _ in results] == [200] * NORMAL_REQUESTS
    assert max(seconds for _, seconds in results) < 1.0, results


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip()
        for name, value in (line.split(":", 1) for line in header_lines)
    }
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def log_entries(log_path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def stalled_bodies_counted(port: int) -> float:
    samples = metric_samples(port)
    (counted,) = [
        s.value for s in samples if s.name == "digits_stalled_request_bodies_total"
    ]
    return counted


def test_a_slow_but_steady_upload_is_not_a_stall(onnx_path, tmp_path):
    """SERVE_TIMEOUT=1 and a 1024-row batch sent in 60 KB slices 0.4 s apart:
    1.6 s in all, but never a second without a new 64 KiB piece."""
    rows = [[(row + column) % 17 for column in range(64)] for row in range(1024)]
    body = json.dumps({"instances": rows}).encode()
    env = {"SERVE_TIMEOUT": "1"}
    with serving_process(onnx_path, tmp_path / "server.log", 1, extra_env=env) as (
        _,
        port,
    ):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(
            (
                "POST /predict/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        slice_bytes = 60_000
        for start in range(0, len(body), slice_bytes):
            time.sleep(0.4)
            sock.sendall(body[start : start + slice_bytes])
        status, _, answer = read_response(sock)
        sock.close()
    assert len(body) > 3 * slice_bytes
    assert status == 200 and len(json.loads(answer)["predictions"]) == 1024


@pytest.mark.parametrize("client_gives_up", [False, True])
def test_a_stalled_body_is_reported_while_it_hangs_and_answered_408(
    onnx_path, tmp_path, client_gives_up
):
    """SERVE_TIMEOUT=1: the stall is logged with its request id and counted
    within about 2 s; the late body gets a 408 with that same id."""
    log_path = tmp_path / "server.log"
    env = {"SERVE_TIMEOUT": "1"}
    with serving_process(onnx_path, log_path, 1, extra_env=env) as (_, port):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        head = (
            "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nX-Request-ID: stalled-upload-1\r\n"
            f"Content-Length: {len(PREDICT_BODY)}\r\n\r\n"
        ).encode()
        sock.sendall(head + PREDICT_BODY[:10])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and stalled_bodies_counted(port) == 0:
            time.sleep(0.2)
        assert stalled_bodies_counted(port) == 1
        (stall,) = [
            e for e in log_entries(log_path) if e["message"] == "request body stalled"
        ]
        assert stall["level"] == "warning" and stall["path"] == "/predict"
        assert stall["request_id"] == "stalled-upload-1" and stall["waited_s"] >= 1
        assert timed_predict(port)[0] == 200  # others are served meanwhile
        if client_gives_up:
            sock.close()
        else:
            sock.sendall(PREDICT_BODY[10:])
            status, headers, body = read_response(sock)
            sock.close()
            assert status == 408
            assert json.loads(body)["error"]["code"] == "request_timeout"
            assert headers["x-request-id"] == "stalled-upload-1"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not [
            e for e in log_entries(log_path) if e.get("status") == 408
        ]:
            time.sleep(0.2)
        (access,) = [e for e in log_entries(log_path) if e.get("status") == 408]
        assert access["request_id"] == "stalled-upload-1"
        assert stalled_bodies_counted(port) == 1  # counted once, not per check
        timeouts = [
            s.value
            for s in metric_samples(port)
            if s.name == "digits_http_requests_total" and s.labels["status"] == "408"
        ]
        assert timeouts == [1.0]


def test_keep_alive_connection_serves_many_requests(running_server):
    _, port, _ = running_server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        statuses = [predict_on(connection) for _ in range(50)]
        local_port = connection.sock.getsockname()[1]
        statuses.append(predict_on(connection))
        assert connection.sock.getsockname()[1] == local_port  # one TCP connection
    finally:
        connection.close()
    assert statuses == [200] * 51


@pytest.mark.parametrize("delay_s", [0.2, 0.6, 1.2])
def test_sigterm_during_start_up_stops_within_two_seconds(onnx_path, tmp_path, delay_s):
    port = free_port()
    log_path = tmp_path / "server.log"
    process = start_server(
        serve_env_python(),
        {"PORT": str(port), "SERVE_MODEL_PATH": str(onnx_path), "SERVE_WORKERS": "2"},
        log_path,
    )
    time.sleep(delay_s)  # before, while and after the workers load the model
    workers = children_of(process.pid)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(
            f"still running 10 s after SIGTERM:\n{log_path.read_text()}"
        ) from None
    assert time.monotonic() - signalled <= 2.0, log_path.read_text()
    time.sleep(0.2)  # an orphan would be re-parented and reaped by now
    assert not any(is_running(worker) for worker in workers)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def load_until(port: int, stop: threading.Event, keep_alive: bool) -> list:
    """Send /predict until `stop`; return the failures (status or exception).

    On a kept-alive connection, a request that fails before any byte of answer
    is retried once on a new connection, as HTTP clients do when the server
    closed an idle connection (a reload closes the old workers' ones).
    """
    failures: list = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    sent = 0
    while not stop.is_set() and sent < 5000:
        sent += 1
        if not keep_alive:
            connection.close()
        reused = connection.sock is not None
        try:
            status = predict_on(connection)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            connection.close()
            if not reused:
                failures.append("failed on a new connection")
                continue
            status = predict_on(connection)  # the one retry, on a new connection
        except (OSError, http.client.HTTPException) as error:
            failures.append(repr(error))
            connection.close()
            continue
        if status != 200:
            failures.append(status)
        time.sleep(0.002)
    connection.close()
    return failures


def worker_pids_in(log_text: str) -> set[int]:
    """Pids of the workers that wrote access lines for /predict."""
    return {
        entry["pid"]
        for entry in map(json.loads, re.findall(r"^\{.*\}$", log_text, re.M))
        if entry.get("route") == "/predict"
    }


def wait_until_replaced(process, old_workers: set[int]) -> None:
    """Wait until none of `old_workers` is a child of the server any more."""
    deadline = time.monotonic() + REPLACE_TIMEOUT_S
    while time.monotonic() < deadline and children_of(process.pid) & old_workers:
        time.sleep(0.2)
    assert not children_of(process.pid) & old_workers, "workers were not replaced"


def reload_under_load(process, port: int) -> list:
    """SIGHUP the server while two clients (one keep-alive) send predictions;
    return the failed requests once every worker has been replaced."""
    old_workers = children_of(process.pid)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=2) as pool:
        loads = [pool.submit(load_until, port, stop, keep) for keep in (False, True)]
        time.sleep(1.0)
        process.send_signal(signal.SIGHUP)
        wait_until_replaced(process, old_workers)
        time.sleep(1.0)
        stop.set()
        return [failure for load in loads for failure in load.result()]


def kill_one_worker_and_wait_for_its_replacement(process) -> int:
    """SIGKILL one worker; return its pid once another has taken its place."""
    victim = min(children_of(process.pid))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + REPLACE_TIMEOUT_S
    while time.monotonic() < deadline:
        current = children_of(process.pid)
        if victim not in current and len(current) == 2:
            return victim
        time.sleep(0.2)
    raise AssertionError("the killed worker was not replaced")


def predicted_rows(samples: list) -> float:
    """digits_predicted_rows_total in a scrape's samples."""
    return sum(s.value for s in samples if s.name == "digits_predicted_rows_total")


def files_of_worker(metrics_dir: str, pid: int) -> list[str]:
    return [name for name in os.listdir(metrics_dir) if f"_{pid}." in name]


def test_sighup_replaces_workers_without_failed_requests(running_server):
    process, port, log_path = running_server
    before = worker_pids_in(log_path.read_text())
    predicted_before = predicted_rows(metric_samples(port))
    old_workers = children_of(process.pid)
    failures = reload_under_load(process, port)
    new_workers = children_of(process.pid)
    assert failures == []
    assert len(new_workers) == 2 and not new_workers & old_workers
    served_by = worker_pids_in(log_path.read_text()) - before
    assert served_by & new_workers  # the new workers answered
    samples = metric_samples(port)
    # Counters outlive the replaced workers; their live gauges do not.
    assert predicted_rows(samples) > predicted_before
    (model_info,) = [s for s in samples if s.name == "digits_model_info"]
    assert model_info.value == 1.0
    # The replaced workers' files are merged away, not left to pile up.
    metrics_dir = metrics_dir_of(process.pid)
    assert not [
        name for pid in old_workers for name in files_of_worker(metrics_dir, pid)
    ]


def test_killed_worker_is_replaced_its_counts_kept_and_its_files_merged(
    running_server,
):
    process, port, log_path = running_server
    metrics_dir = metrics_dir_of(process.pid)
    for _ in range(200):  # until both workers have counted some
        if children_of(process.pid) <= worker_pids_in(log_path.read_text()):
            break
        assert timed_predict(port)[0] == 200
    assert children_of(process.pid) <= worker_pids_in(log_path.read_text())
    counted = predicted_rows(metric_samples(port))
    victim = kill_one_worker_and_wait_for_its_replacement(process)
    statuses = [timed_predict(port)[0] for _ in range(10)]
    assert statuses == [200] * 10
    # Its replacement merges the dead worker's files as it starts, scrape or not.
    deadline = time.monotonic() + REPLACE_TIMEOUT_S
    while time.monotonic() < deadline and files_of_worker(metrics_dir, victim):
        time.sleep(0.1)
    assert files_of_worker(metrics_dir, victim) == []
    assert "counter_merged.db" in os.listdir(metrics_dir)
    assert predicted_rows(metric_samples(port)) == counted + 10


def metrics_dir_of(pid: int) -> str:
    """The metrics directory of server `pid`: where its workers map sample files."""
    for child in children_of(pid):
        try:
            with open(f"/proc/{child}/maps") as file:
                mapped = [
                    line.split()[-1] for line in file if line.rstrip().endswith(".db")
                ]
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        if mapped:
            return os.path.dirname(mapped[0])
    raise AssertionError("no worker has mapped a metrics file")


def test_temporary_metrics_directory_is_removed_at_exit(onnx_path, tmp_path):
    with serving_process(onnx_path, tmp_path / "server.log", workers=1) as (
        process,
        _,
    ):
        metrics_dir = metrics_dir_of(process.pid)
        assert os.path.isdir(metrics_dir)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert not os.path.exists(metrics_dir)


def test_configured_metrics_directory_is_emptied_at_exit(onnx_path, tmp_path):
    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "other.txt").write_text("not the server's")
    with serving_process(
        onnx_path,
        tmp_path / "server.log",
        workers=1,
        extra_env={"PROMETHEUS_MULTIPROC_DIR": str(configured)},
    ) as (process, port):
        assert timed_predict(port)[0] == 200
        assert predicted_rows(metric_samples(port)) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    assert os.listdir(configured) == ["other.txt"]


def test_workers_that_cannot_boot_end_the_server_with_status_1(tmp_path):
    """No port left open that nobody answers: each failure is one JSON line,
    and the server exits non-zero within seconds for a supervisor to see."""
    # The launcher's model check is skipped (serve() directly), so the
    # workers themselves find the model missing.
    started = time.monotonic()
    result = subprocess.run(
        [
            str(serve_env_python()),
            "-c",
            "from serving.config import ServeConfig\n"
            "from serving.server import serve\n"
            "serve(ServeConfig.from_env())",
        ],
        cwd=REPO_ROOT,
        env={
            "PATH": os.environ["PATH"],
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "SERVE_WORKERS": "2",
            "SERVE_MODEL_PATH": str(tmp_path / "absent.onnx"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    failures = [e for e in entries if e["message"].startswith("worker failed to boot")]
    assert failures and all(e["level"] == "error" for e in failures)
    assert "model file not found" in failures[0]["message"]
    assert any("crash loop" in e["message"] for e in entries)


def test_every_log_line_is_json_the_start_line_included(running_server):
    _, port, log_path = running_server
    assert timed_predict(port)[0] == 200
    lines = log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # fails on any plain line
    assert entries[0]["logger"] == "serving.main"
    assert "Starting granian" in {entry["message"].split(" (")[0] for entry in entries}
    assert any(entry.get("route") == "/predict" for entry in entries)


def test_a_second_server_on_a_busy_port_refuses_to_start(running_server, onnx_path):
    _, port, _ = running_server
    result = subprocess.run(
        [str(serve_env_python()), "-m", "serving"],
        cwd=REPO_ROOT,
        env={
            "PATH": os.environ["PATH"],
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "SERVE_MODEL_PATH": str(onnx_path),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
