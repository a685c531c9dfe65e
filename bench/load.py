"""Drive HTTP load with wrk and read its results.

wrk (C, epoll) rather than a Python client: at a few thousand requests per
second a Python client would need more CPU than the server it measures. On a
2-core machine wrk still takes CPU from the server, so every run reports how
much it used.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("post.lua")
# post.lua sends the lines of BODY.headers ("Name: value") with BODY; without
# that file the body is JSON.
HEADERS_SUFFIX = ".headers"
JSON_HEADERS = {"Content-Type": "application/json"}
WRK_INSTALL_HINT = (
    "wrk is not installed: on Debian or Ubuntu run `apt-get install -y wrk` "
    "(as root, or with sudo), or `make bench-install-wrk`"
)
# One wrk thread drives even 32 connections at these rates; a second thread
# would only take more CPU away from the server on a 2-core machine.
WRK_THREADS = 1
# Let a run overrun its duration by this much before it counts as hung.
WRK_GRACE_S = 15
# A request slower than this is counted as a timeout instead of a latency.
WRK_TIMEOUT_S = 5
ERROR_KEYS = (
    "connect_errors",
    "read_errors",
    "write_errors",
    "status_errors",
    "timeouts",
)


class LoadError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # connection errors, timeouts and non-2xx responses
    rows_per_request: int = 1

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.requests_per_s * self.rows_per_request


def require_wrk() -> str:
    """Return the path of wrk, or raise LoadError saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise LoadError(WRK_INSTALL_HINT)
    return path


def parse_wrk_summary(output: str, rows_per_request: int = 1) -> LoadResult:
    """Read the `BENCH key=value ...` line that bench/post.lua prints."""
    for line in output.splitlines():
        if line.startswith("BENCH "):
            values = dict(item.split("=", 1) for item in line.split()[1:])
            break
    else:
        raise LoadError(f"wrk printed no BENCH summary line:\n{output[-2000:]}")
    try:
        return LoadResult(
            requests=int(values["requests"]),
            seconds=int(values["duration_us"]) / 1e6,
            p50_ms=float(values["p50_us"]) / 1e3,
            p99_ms=float(values["p99_us"]) / 1e3,
            max_ms=float(values["max_us"]) / 1e3,
            errors=sum(int(values[key]) for key in ERROR_KEYS),
            rows_per_request=rows_per_request,
        )
    except (KeyError, ValueError) as error:
        raise LoadError(f"malformed wrk summary {line!r}: {error}") from None


def body_headers(body_path: Path) -> dict[str, str]:
    """The headers wrk sends with `body_path` (post.lua reads the same file)."""
    sidecar = body_path.with_name(body_path.name + HEADERS_SUFFIX)
    if not sidecar.exists():
        return dict(JSON_HEADERS)
    return dict(line.split(": ", 1) for line in sidecar.read_text().splitlines())


def wrk_command(
    wrk: str, url: str, body_path: Path, connections: int, seconds: float
) -> list[str]:
    """Build the wrk command line for a closed-loop POST run."""
    return [
        wrk,
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        f"--timeout={WRK_TIMEOUT_S}s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(body_path),
    ]


def run_wrk(
    url: str,
    body_path: Path,
    connections: int,
    seconds: float,
    rows_per_request: int = 1,
) -> LoadResult:
    """POST `body_path` to `url` over `connections` connections for `seconds`."""
    command = wrk_command(require_wrk(), url, body_path, connections, seconds)
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LoadError(f"wrk did not finish: {' '.join(command)}") from None
    if completed.returncode != 0:
        raise LoadError(f"wrk failed ({completed.returncode}): {completed.stderr}")
    return parse_wrk_summary(completed.stdout, rows_per_request)
