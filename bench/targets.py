"""The issue's targets, as ratios between measurements of one run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.plan import GUNICORN, NOOP, NOOP_PATH, PRODUCTION, TUNED, TYPICAL
from bench.report import ServerResult, markdown_table


@dataclass(frozen=True)
class Target:
    """A ratio the issue asks for, e.g. production / baseline >= 1.5."""

    name: str
    ratio: float | None  # None when a side was not measured
    bound: float
    at_least: bool  # True: ratio >= bound; False: ratio <= bound
    # Why the two measurements cannot be compared in this run, if they cannot.
    incomparable: str | None = None

    @property
    def met(self) -> bool | None:
        if self.ratio is None or self.incomparable:
            return None
        return self.ratio >= self.bound if self.at_least else self.ratio <= self.bound

    def row(self) -> list[str]:
        sign = "≥" if self.at_least else "≤"
        ratio = "n/a" if self.ratio is None else f"{self.ratio:.2f}"
        if ratio == f"{self.bound:.2f}":  # 0.7478 against 0.75: show why it fails
            ratio = f"{self.ratio:.3f}"
        verdict = {True: "met", False: "**not met**", None: "not measured"}[self.met]
        if self.incomparable and self.ratio is not None:
            verdict = f"not comparable: {self.incomparable}"
        return [self.name, ratio, f"{sign} {self.bound:.2f}", verdict]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Divide, or None when either side is missing or the divisor is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def predict_rps(result: ServerResult | None, connections: int) -> float | None:
    """Return /predict's req/s at `connections`, if that run was made."""
    load = result and result.load("/predict", connections)
    return load.requests_per_s if load else None


def predict_p99(result: ServerResult | None, connections: int) -> float | None:
    """Return /predict's p99 in ms at `connections`, if that run was made."""
    load = result and result.load("/predict", connections)
    return load.p99_ms if load else None


def cold_start(result: ServerResult | None) -> float | None:
    """Return the median cold start in seconds."""
    return result.cold_start_s if result else None


def pss_per_worker(result: ServerResult | None) -> float | None:
    """Return the mean PSS of a worker in KiB."""
    return result.pss_per_worker_kib if result else None


# A worker this far below the busiest one was left nearly idle: the run's
# connections landed on the others, so its rate is not what the server does.
UNEVEN_WORKER_SHARE = 0.25


def uneven_spread(result: ServerResult | None, path: str, connections: int) -> bool:
    """Whether a multi-worker server's connections all but missed a worker."""
    cpu = result and result.cpu(path, connections)
    if not cpu or len(cpu.workers) < 2:
        return False
    return min(cpu.workers) < UNEVEN_WORKER_SHARE * max(cpu.workers)


def incomparable(
    runs: Sequence[tuple[str, ServerResult | None, str]], connections: int
) -> str | None:
    """Name the servers whose connections landed on one worker, if any did.

    `runs` are the (server name, its result, path) compared at `connections`.
    """
    uneven = [
        name for name, result, path in runs if uneven_spread(result, path, connections)
    ]
    if not uneven:
        return None
    return f"{' and '.join(uneven)}: connections on one worker (CPU by worker)"


# What is compared: (name, value of a server's result, True if more is better).
METRICS = {
    "rate": ("/predict req/s at c=8", lambda result: predict_rps(result, 8), True),
    "p99": ("/predict p99 at c=32", lambda result: predict_p99(result, 32), False),
    "cold start": ("cold start", cold_start, False),
    "pss": ("PSS per worker", pss_per_worker, False),
}
# The load runs behind a metric, (path, connections): None for footprints.
LOAD_RUNS = {"rate": ("/predict", 8), "p99": ("/predict", 32)}
# The bounds on production / another server, metric by metric.
BOUNDS = {
    "rate": {GUNICORN: 1.5, TUNED: 1.5, TYPICAL: 2.0},
    "p99": {GUNICORN: 1.0, TUNED: 1 / 3},
    "cold start": {GUNICORN: 1.2, TYPICAL: 0.5},
    "pss": {GUNICORN: 1.2, TYPICAL: 1 / 3},
}


def stack_limit(
    production: ServerResult, noop: ServerResult | None, connections: int
) -> Target:
    """/predict's rate over the no-op route's, under the same server settings."""
    load = noop and noop.load(NOOP_PATH, connections)
    return Target(
        f"/predict req/s at c={connections} vs no-op route (stack limit)",
        ratio(predict_rps(production, connections), load and load.requests_per_s),
        0.75,
        at_least=True,
        incomparable=incomparable(
            [(PRODUCTION, production, "/predict"), (NOOP, noop, NOOP_PATH)],
            connections,
        ),
    )


def check_targets(
    results: Mapping[str, ServerResult],
    floors: dict,
    sizes: dict[str, dict],
    batch_rows: int,
) -> list[Target]:
    """Compute the issue's target ratios from one run's measurements.

    `results` maps server names (bench/plan.py) to what was measured; a server
    that was not run leaves its targets "not measured".
    """
    production = results[PRODUCTION]
    targets = [
        Target(
            f"{name} vs {other}",
            ratio(value(production), value(results.get(other))),
            bound,
            at_least,
            incomparable(
                [
                    (PRODUCTION, production, LOAD_RUNS[metric][0]),
                    (other, results.get(other), LOAD_RUNS[metric][0]),
                ],
                LOAD_RUNS[metric][1],
            )
            if metric in LOAD_RUNS
            else None,
        )
        for metric, (name, value, at_least) in METRICS.items()
        for other, bound in BOUNDS[metric].items()
    ]
    batch = production.load("/predict/batch", 1, batch_rows)
    return [
        *targets,
        stack_limit(production, results.get(NOOP), 8),
        stack_limit(production, results.get(NOOP), 32),
        Target(
            f"/predict/batch rows/s ({batch_rows} rows, c=1) vs decode floor",
            ratio(batch and batch.rows_per_s, floors["service_decode_rows_per_s"]),
            0.5,
            at_least=True,
        ),
        Target(
            "serve env size vs train env size (packages)",
            ratio(sizes["serve"]["package_bytes"], sizes["train"]["package_bytes"]),
            0.2,
            at_least=False,
        ),
    ]


def targets_table(checked: Sequence[Target]) -> str:
    """Render the targets with their measured ratios and verdicts."""
    rows = [target.row() for target in checked]
    return markdown_table(["target (ratio in this run)", "ratio", "needed", ""], rows)
