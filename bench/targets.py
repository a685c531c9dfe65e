"""The issue's targets, as ratios between measurements of one run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.report import ServerResult, markdown_table


@dataclass(frozen=True)
class Target:
    """A ratio the issue asks for, e.g. production / baseline >= 2."""

    name: str
    ratio: float | None  # None when a side was not measured
    bound: float
    at_least: bool  # True: ratio >= bound; False: ratio <= bound

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio >= self.bound if self.at_least else self.ratio <= self.bound

    def row(self) -> list[str]:
        sign = "≥" if self.at_least else "≤"
        ratio = "n/a" if self.ratio is None else f"{self.ratio:.2f}"
        verdict = {True: "met", False: "**not met**", None: "not measured"}
        return [self.name, ratio, f"{sign} {self.bound:.2f}", verdict[self.met]]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Divide, or None when either side is missing or the divisor is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def check_targets(
    production: ServerResult,
    typical: ServerResult | None,
    tuned: ServerResult | None,
    floors: dict,
    sizes: dict[str, dict],
    batch_rows: int,
) -> list[Target]:
    """Compute the issue's target ratios from one run's measurements."""

    def rps(result: ServerResult | None, connections: int) -> float | None:
        load = result and result.load("/predict", connections)
        return load.requests_per_s if load else None

    def p99(result: ServerResult | None, connections: int) -> float | None:
        load = result and result.load("/predict", connections)
        return load.p99_ms if load else None

    batch = production.load("/predict/batch", 1, batch_rows)
    return [
        Target(
            "/predict req/s at c=8 vs FastAPI+torch typical",
            ratio(rps(production, 8), rps(typical, 8)),
            2.0,
            at_least=True,
        ),
        Target(
            "/predict req/s at c=8 vs FastAPI+torch tuned",
            ratio(rps(production, 8), rps(tuned, 8)),
            1.0,
            at_least=True,
        ),
        Target(
            "/predict p99 at c=32 vs FastAPI+torch tuned",
            ratio(p99(production, 32), p99(tuned, 32)),
            1 / 3,
            at_least=False,
        ),
        Target(
            f"/predict/batch rows/s ({batch_rows} rows, c=1) vs decode floor",
            ratio(batch and batch.rows_per_s, floors["service_decode_rows_per_s"]),
            0.5,
            at_least=True,
        ),
        Target(
            "cold start vs FastAPI+torch typical",
            ratio(production.cold_start_s, typical and typical.cold_start_s),
            0.5,
            at_least=False,
        ),
        Target(
            "PSS per worker vs a torch worker (typical)",
            ratio(
                production.pss_per_worker_kib, typical and typical.pss_per_worker_kib
            ),
            1 / 3,
            at_least=False,
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
