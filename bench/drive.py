"""Drive the servers: start them, load each in turn with wrk, read their memory."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bench.load import LoadError, LoadResult, body_headers, run_wrk
from bench.plan import LoadRun, schedule
from bench.report import ServerResult
from bench.servers import (
    RunningServer,
    ServerError,
    ServerSpec,
    http_status,
    log_tail,
    start_server,
    stop_server,
)
from bench.system import (
    CpuShare,
    CpuSnapshot,
    cpu_share,
    process_tree,
    pss_kib,
    worker_pids,
)

WARMUP_S = 1.0


def log(message: str) -> None:
    """Report progress on stderr, keeping stdout for the report."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def start_with_cold_starts(
    spec: ServerSpec, count: int, workdir: Path
) -> tuple[RunningServer, list[float]]:
    """Start `spec` `count` times, one at a time; keep the last start running."""
    log_path = workdir / f"{re.sub('[^A-Za-z0-9]+', '-', spec.name)}.log"
    cold_starts = []
    for attempt in range(count):
        server = start_server(spec, log_path)
        cold_starts.append(server.cold_start_s)
        log(f"{spec.name}: ready after {server.cold_start_s:.2f}s")
        if attempt < count - 1:
            stop_server(server)
    return server, cold_starts


def load_or_explain(
    server: RunningServer, body_path: Path, path: str, connections: int, **run: float
) -> LoadResult:
    """Run wrk on `server`; if it fails because the server died, say so with its log."""
    try:
        return run_wrk(server.url(path), body_path, connections, **run)
    except LoadError:
        if server.process.poll() is None:
            raise
        raise ServerError(
            f"{server.spec.name} exited with {server.process.returncode} during "
            f"the load:\n{log_tail(server.log_path)}"
        ) from None


def measure_run(
    server: RunningServer, run: LoadRun, body_path: Path, duration: float
) -> tuple[LoadResult, CpuShare] | None:
    """Load `server` with `run`; None if the endpoint does not answer 200."""
    body, headers = body_path.read_bytes(), body_headers(body_path)
    if http_status(server.port, "POST", run.path, body, headers) != 200:
        return None
    pids = process_tree(server.process.pid)
    workers = worker_pids(server.process.pid)
    before = CpuSnapshot.take(pids, workers)
    load = load_or_explain(
        server,
        body_path,
        run.path,
        run.connections,
        seconds=duration,
        rows_per_request=run.rows,
    )
    share = cpu_share(before, CpuSnapshot.take(pids, workers))
    log(
        f"{server.spec.name}: {run.label} c={run.connections}: "
        f"{load.requests_per_s:.0f} req/s, p99 {load.p99_ms:.2f} ms, "
        f"other CPU {share.other:.0f}%"
    )
    return load, share


def benchmark(
    plan: list[tuple[ServerSpec, list[LoadRun]]],
    bodies: dict[str, Path],
    starts: int,
    duration_s: float,
    workdir: Path,
) -> list[ServerResult]:
    """Start every server, load them in turn, read their workers' PSS, stop them.

    Cold starts are taken one server at a time. The servers then stay up
    (idle ones cost no CPU) so that each load run is made on every server back
    to back: a burst of other work on the machine then skews one comparison
    less than if each server's runs were minutes apart.
    """
    running: list[tuple[RunningServer, ServerResult, list[LoadRun]]] = []
    try:
        for spec, runs in plan:
            server, cold_starts = start_with_cold_starts(spec, max(1, starts), workdir)
            running.append((server, ServerResult(spec.name, cold_starts), runs))
        for server, _, _ in running:
            load_or_explain(server, bodies["predict"], "/predict", 8, seconds=WARMUP_S)
        for run in schedule(runs for _, runs in plan):
            for server, result, runs in running:
                if run not in runs:
                    continue
                measured = measure_run(server, run, bodies[run.body], duration_s)
                if measured is None:
                    result.skipped.append(f"{run.label}: no 200, not measured")
                else:
                    result.loads[run] = measured
        # After the load, so each worker has touched everything it needs.
        for server, result, _ in running:
            main_pid = server.process.pid
            result.worker_pss_kib = [pss_kib(pid) for pid in worker_pids(main_pid)]
            result.total_pss_kib = sum(pss_kib(pid) for pid in process_tree(main_pid))
    finally:
        for server, _, _ in running:
            stop_server(server)
    return [result for _, result, _ in running]
