"""Turn measurements into markdown tables and check them against the targets."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.load import LoadResult
from bench.plan import LoadRun
from bench.system import CpuShare

# A run during which other processes took more than this much CPU (in % of one
# core) is flagged as noisy.
NOISY_OTHER_CPU = 10.0


@dataclass
class ServerResult:
    """Everything measured on one server setup."""

    name: str
    cold_starts_s: list[float]
    loads: dict[LoadRun, tuple[LoadResult, CpuShare]] = field(default_factory=dict)
    worker_pss_kib: list[int] = field(default_factory=list)
    # The whole process tree: a supervisor that loaded the model counts here.
    total_pss_kib: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def cold_start_s(self) -> float:
        return statistics.median(self.cold_starts_s)

    @property
    def pss_per_worker_kib(self) -> float:
        return statistics.mean(self.worker_pss_kib) if self.worker_pss_kib else 0.0

    def load(self, path: str, connections: int, rows: int = 1) -> LoadResult | None:
        """Return the result of the run matching the arguments, if it was made."""
        measured = self.measured(path, connections, rows)
        return measured[0] if measured else None

    def cpu(self, path: str, connections: int, rows: int = 1) -> CpuShare | None:
        """Return how the CPU was spent in the run matching the arguments."""
        measured = self.measured(path, connections, rows)
        return measured[1] if measured else None

    def measured(
        self, path: str, connections: int, rows: int = 1
    ) -> tuple[LoadResult, CpuShare] | None:
        for run, measured in self.loads.items():
            if (run.path, run.connections, run.rows) == (path, connections, rows):
                return measured
        return None


def format_rate(value: float | None) -> str:
    """Format a per-second rate with three significant digits: 4.52 k, 2.59 M."""
    if value is None:
        return "n/a"
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g}"


def format_ms(value: float | None) -> str:
    """Format milliseconds with three significant digits."""
    return "n/a" if value is None else f"{value:.3g}"


def format_mib(kib: float) -> str:
    """Format KiB as MiB with one decimal."""
    return f"{kib / 1024:.1f} MiB"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def floors_table(floors: dict) -> str:
    """Render the model and decode floors measured without HTTP."""
    rows_n = floors["batch_rows"]
    batch_1 = floors["onnx_rows_per_s_batch_1"]
    rows = [
        [
            "onnxruntime, batch 1",
            f"{format_rate(batch_1)} rows/s ({1e6 / batch_1:.1f} µs a call)",
        ],
        [
            f"onnxruntime, batch {rows_n}",
            f"{format_rate(floors['onnx_rows_per_s_batch_n'])} rows/s",
        ],
        [
            "decode a /predict body (orjson + schema)",
            f"{format_rate(floors['predict_decode_per_s'])} bodies/s "
            f"({1e6 / floors['predict_decode_per_s']:.1f} µs each)",
        ],
        [
            f"decode floor: {rows_n}-row /predict/batch body (orjson + schema)",
            f"{format_rate(floors['service_decode_rows_per_s'])} rows/s",
        ],
        [
            f"{rows_n}-row body, orjson + np.asarray only (no validation)",
            f"{format_rate(floors['bare_decode_rows_per_s'])} rows/s",
        ],
    ]
    return markdown_table(["floor (serve env, 1 core, no HTTP)", "rate"], rows)


def noise_note(results: Sequence[ServerResult], floors: dict) -> str:
    """Explain the CPU column and say how noisy the machine was during the run."""
    others = [cpu.other for result in results for _, cpu in result.loads.values()]
    noisy = sum(other > NOISY_OTHER_CPU for other in others)
    verdict = (
        f"**{noisy} of {len(others)} load runs were noisy** (other > "
        f"{NOISY_OTHER_CPU:.0f}%): rerun on a quiet machine before quoting them."
        if noisy or floors["other_cpu_percent"] > NOISY_OTHER_CPU
        else f"Quiet run: other processes stayed under {NOISY_OTHER_CPU:.0f}%."
    )
    return (
        "wrk: 1 thread, closed loop (a connection sends its next request when "
        "the last one is answered), on the same cores as the server. CPU % is "
        "of one core, as top shows it (2 cores = 200%), over each run; 'other' is "
        "everything else on the machine (other processes, kernel interrupts): "
        f"noise. Other CPU during load runs: up to {max(others, default=0):.0f}%; "
        f"during the floors: {floors['other_cpu_percent']:.0f}%. {verdict} "
        "CPU by worker, busiest first, shows how the connections spread: a "
        "keep-alive connection stays with the worker that accepted it."
    )


def load_table(results: Sequence[ServerResult]) -> str:
    """Render one row per wrk run of every server."""
    rows = []
    for result in results:
        for run, (load, cpu) in result.loads.items():
            rows.append(
                [
                    result.name,
                    run.label,
                    str(run.connections),
                    format_rate(load.requests_per_s),
                    format_rate(load.rows_per_s),
                    format_ms(load.p50_ms),
                    format_ms(load.p99_ms),
                    str(load.errors),
                    f"{cpu.server:.0f} / {cpu.load_generator:.0f} / {cpu.other:.0f}",
                    " + ".join(f"{worker:.0f}" for worker in cpu.workers),
                ]
            )
        rows += [[result.name, note, *[""] * 8] for note in result.skipped]
    header = [
        "server",
        "endpoint",
        "conns",
        "req/s",
        "rows/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU % server / wrk / other",
        "CPU % by worker",
    ]
    return markdown_table(header, rows)


def footprint_table(results: Sequence[ServerResult]) -> str:
    """Render cold start and memory per server."""
    rows = [
        [
            result.name,
            f"{result.cold_start_s:.2f} s",
            ", ".join(f"{value:.2f}" for value in result.cold_starts_s),
            str(len(result.worker_pss_kib)),
            format_mib(result.pss_per_worker_kib),
            format_mib(result.total_pss_kib),
        ]
        for result in results
    ]
    header = [
        "server",
        "cold start (median)",
        "all starts (s)",
        "workers",
        "PSS/worker",
        "PSS, all processes",
    ]
    return markdown_table(header, rows)


def env_table(sizes: dict[str, dict]) -> str:
    """Render the environment sizes: packages of the requirements, whole venv."""
    rows = [
        [
            name,
            str(size["packages"]),
            f"{size['package_bytes'] / 1e6:.0f} MB",
            f"{size['environment_bytes'] / 1e6:.0f} MB",
            size["python"],
        ]
        for name, size in sizes.items()
    ]
    header = ["environment", "packages", "their files", "whole venv", "python"]
    return markdown_table(header, rows)
