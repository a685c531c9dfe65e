"""The HTTP layer's watch on request bodies: a pause longer than the timeout is
a stall (reported once while it hangs, then a 408); a slow but steady upload
is not. The streams here stand in for the server's body stream, whose reads
block until the requested bytes are in."""

from __future__ import annotations

import threading
import time

import pytest

from serving import http
from serving.http import LATE_BODY_KEY, READ_PIECE_BYTES, BodyWatch, buffer_body


class PacedStream:
    """A body whose reads each wait `pause_s` seconds before answering."""

    def __init__(self, body: bytes, pause_s: float) -> None:
        self.body, self.pause_s, self.position = body, pause_s, 0

    def read(self, size: int) -> bytes:
        time.sleep(self.pause_s)
        piece = self.body[self.position : self.position + size]
        self.position += len(piece)
        return piece


def read_watched(watch: BodyWatch, body: bytes, pause_s: float) -> dict:
    """Read `body` through the watch as the HTTP layer does; return the environ."""
    environ = {
        "wsgi.input": PacedStream(body, pause_s),
        "CONTENT_LENGTH": str(len(body)),
    }
    watch.begin(environ)
    try:
        buffer_body(environ, limit=len(body) + 1, on_piece=watch.piece_read)
    finally:
        watch.end()
    assert environ["wsgi.input"].read() == body  # read whole, whatever the pace
    return environ


def no_report(environ: dict, seconds: float) -> None:
    raise AssertionError("nothing should have been reported")


@pytest.fixture()
def quick_checks(monkeypatch):
    """The watcher looks every 20 ms instead of every second."""
    monkeypatch.setattr(http, "STALL_CHECK_INTERVAL_S", 0.02)


def test_a_pause_longer_than_the_timeout_makes_the_body_late(quick_checks):
    reports: list[tuple[dict, float]] = []
    watch = BodyWatch(0.1, lambda environ, seconds: reports.append((environ, seconds)))
    environ = read_watched(watch, b"x" * 100, pause_s=0.3)
    assert "stopped for 0.3 s" in environ[LATE_BODY_KEY]
    assert len(reports) == 1  # once, while it hung
    assert reports[0][0] is environ and reports[0][1] > 0.1


def test_a_slow_steady_upload_is_not_late(quick_checks):
    """Four pieces of 64 KiB, 0.1 s each: 0.4 s in all, never a 0.25 s pause."""
    watch = BodyWatch(0.25, no_report)
    environ = read_watched(watch, b"x" * (4 * READ_PIECE_BYTES), pause_s=0.1)
    assert LATE_BODY_KEY not in environ


def test_a_quick_body_is_neither_late_nor_reported(quick_checks):
    watch = BodyWatch(0.5, no_report)
    assert LATE_BODY_KEY not in read_watched(watch, b"{}", pause_s=0.0)
    assert watch.reading == {}


def test_the_first_requests_start_one_watcher_between_them():
    watch = BodyWatch(10.0, no_report)
    before = {t for t in threading.enumerate() if t.name == "body-watch"}
    barrier = threading.Barrier(16)

    def first_request() -> None:
        barrier.wait()
        read_watched(watch, b"{}", pause_s=0.0)

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    watchers = {t for t in threading.enumerate() if t.name == "body-watch"} - before
    assert len(watchers) == 1
