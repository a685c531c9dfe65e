"""What the proxy costs: POST /predict straight to the API, then through nginx.

    python -m bench.proxy [--serve-python .venv-serve/bin/python] [--duration 5]

Starts `python -m serving` (production settings) and the project's nginx
configuration natively (scripts/nginx_native.py: deploy/nginx/ with a local
listen address and upstream), loads each path with wrk on the same cores, and
prints the rate and the CPU time each request cost the API and nginx. The
README's capacity model reads its proxy figures from this output.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import LoadResult, run_wrk
from bench.plan import write_bodies
from bench.servers import http_status
from bench.system import (
    load_average,
    machine_summary,
    process_cpu_seconds,
    process_tree,
)
from contract import ARTIFACTS_DIR, MODEL_FILENAME
from scripts.nginx_native import HOST, free_port, running_nginx

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 30


@dataclass(frozen=True)
class Measured:
    """One wrk run and the CPU seconds the API and nginx spent in it."""

    load: LoadResult
    api_cpu_s: float
    nginx_cpu_s: float

    def per_request_ms(self, cpu_s: float) -> float:
        return 1000 * cpu_s / self.load.requests if self.load.requests else 0.0


def start_api(python: str, model: Path, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOST": HOST,
        "PORT": str(port),
        "SERVE_MODEL_PATH": str(model),
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            [python, "-m", "serving"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while http_status(port, "GET", "/readyz") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the API did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    return process, port


def measure(
    url: str, body: Path, connections: int, seconds: float, api: int, nginx: int | None
) -> Measured:
    """Load `url` and attribute CPU to the API's and nginx's process trees."""
    api_pids = process_tree(api)
    nginx_pids = process_tree(nginx) if nginx else []
    before = process_cpu_seconds(api_pids), process_cpu_seconds(nginx_pids)
    load = run_wrk(url, body, connections, seconds)
    after = process_cpu_seconds(api_pids), process_cpu_seconds(nginx_pids)
    return Measured(load, after[0] - before[0], after[1] - before[1])


def report(rows: dict[str, Measured]) -> str:
    lines = [
        "| path | req/s | p50 ms | p99 ms | errors | API CPU ms/request "
        "| nginx CPU ms/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row.load.requests_per_s:,.0f} | {row.load.p50_ms:.2f} "
            f"| {row.load.p99_ms:.2f} | {row.load.errors} "
            f"| {row.per_request_ms(row.api_cpu_s):.3f} "
            f"| {row.per_request_ms(row.nginx_cpu_s):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-python", default=".venv-serve/bin/python")
    parser.add_argument("--model", default=f"{ARTIFACTS_DIR}/{MODEL_FILENAME}")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    body = write_bodies(workdir)["predict"]
    api, port = start_api(
        args.serve_python, Path(args.model).resolve(), workdir / "api.log"
    )
    rows: dict[str, Measured] = {}
    try:
        with running_nginx(workdir, f"http://{HOST}:{port}") as nginx:
            proxy_pid = nginx.process.pid
            targets = {
                "direct to the API": (f"http://{HOST}:{port}/predict", None),
                "through nginx": (f"http://{HOST}:{nginx.port}/predict", proxy_pid),
            }
            for name, (url, nginx_pid) in targets.items():
                print(f"[bench] {name}: {args.duration:g} s of wrk", file=sys.stderr)
                rows[name] = measure(
                    url, body, args.connections, args.duration, api.pid, nginx_pid
                )
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=15)
    print(f"Command: `python -m bench.proxy --duration {args.duration:g}`  ")
    print(f"Machine: {machine_summary()}  ")
    print(f"Load average before the run: {load_average()}\n")
    print(f"POST /predict, wrk 1 thread, c={args.connections}, same cores:\n")
    print(report(rows))


if __name__ == "__main__":
    main()
