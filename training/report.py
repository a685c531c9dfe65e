"""The evaluation report: per-seed scores, pooled per-class figures, as JSON and text.

`python -m training.evaluate` fills it; nothing here trains or imports torch.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import CLASSES
from training.metrics import (
    CONFIDENT_THRESHOLD,
    ECE_BINS,
    Scores,
    class_confusion,
    most_confused_pairs,
    per_class_report,
)

REPORT_JSON_FILENAME = "evaluation.json"
REPORT_TEXT_FILENAME = "evaluation.md"

# What the recipe must reach over the split seeds (issue 11; see README).
TARGET_MEAN_ACCURACY = 0.990
TARGET_MIN_ACCURACY = 0.986
TARGET_MEAN_ECE = 0.012
TARGET_MEAN_NLL = 0.035

SCORE_COLUMNS = ("accuracy", "nll", "brier", "ece")


@dataclass(frozen=True)
class SeedResult:
    """One split seed: the fitted temperature and the test scores around it."""

    seed: int
    temperature: float
    served: Scores  # probabilities at the fitted temperature, as the API serves them
    unscaled: Scores  # the same model at temperature 1


def summarise(results: list[SeedResult], attribute: str) -> dict[str, dict]:
    """Return mean and min of each score column of `served` or `unscaled`."""
    summary = {}
    for column in SCORE_COLUMNS:
        values = [getattr(getattr(r, attribute), column) for r in results]
        summary[column] = {"mean": statistics.mean(values), "min": min(values)}
    return summary


def targets_met(results: list[SeedResult]) -> dict[str, bool]:
    """Check each target of the recipe against the served scores."""
    served = summarise(results, "served")
    return {
        f"accuracy mean >= {TARGET_MEAN_ACCURACY}": served["accuracy"]["mean"]
        >= TARGET_MEAN_ACCURACY,
        f"accuracy min >= {TARGET_MIN_ACCURACY}": served["accuracy"]["min"]
        >= TARGET_MIN_ACCURACY,
        f"ECE mean <= {TARGET_MEAN_ECE}": served["ece"]["mean"] <= TARGET_MEAN_ECE,
        f"NLL mean <= {TARGET_MEAN_NLL}": served["nll"]["mean"] <= TARGET_MEAN_NLL,
    }


def build_report(
    results: list[SeedResult], labels: np.ndarray, predicted: np.ndarray
) -> dict:
    """Assemble the report; `labels` and `predicted` pool every seed's test rows."""
    matrix = class_confusion(labels, predicted)
    confident = sum(r.served.confident_errors for r in results)
    errors = sum(r.served.errors for r in results)
    return {
        "seeds": [r.seed for r in results],
        "per_seed": [
            {
                "seed": r.seed,
                "temperature": r.temperature,
                "served": r.served.to_dict(),
                "unscaled": r.unscaled.to_dict(),
            }
            for r in results
        ],
        "served": summarise(results, "served"),
        "unscaled": summarise(results, "unscaled"),
        "confident_errors": {
            "threshold": CONFIDENT_THRESHOLD,
            "count": confident,
            "errors": errors,
            "share": confident / errors if errors else 0.0,
        },
        "ece_bins": ECE_BINS,
        "per_class": per_class_report(labels, predicted),
        "confusion_matrix": matrix.tolist(),
        "most_confused": most_confused_pairs(matrix),
        "targets": targets_met(results),
    }


def verdict_line(report: dict) -> str:
    """Return the one line that says whether every target is met."""
    targets = report["targets"]
    status = "met" if all(targets.values()) else "NOT met"
    return f"target: {', '.join(targets)}: {status}"


def render_text(report: dict) -> str:
    """Render the report as Markdown (readable as plain text too)."""
    lines = [
        f"# Evaluation over split seeds {', '.join(map(str, report['seeds']))}",
        "",
        "Test split of each seed; `served` is at the temperature fitted on that "
        f"seed's training split, `unscaled` at temperature 1. ECE: {ECE_BINS} bins.",
        "",
        "| seed | T | accuracy | NLL | Brier | ECE | NLL unscaled | ECE unscaled |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["per_seed"]:
        served, unscaled = row["served"], row["unscaled"]
        lines.append(
            f"| {row['seed']} | {row['temperature']:.3f} | {served['accuracy']:.4f} "
            f"| {served['nll']:.4f} | {served['brier']:.4f} | {served['ece']:.4f} "
            f"| {unscaled['nll']:.4f} | {unscaled['ece']:.4f} |"
        )
    for statistic in ("mean", "min"):
        served, unscaled = report["served"], report["unscaled"]
        lines.append(
            f"| {statistic} | | {served['accuracy'][statistic]:.4f} "
            f"| {served['nll'][statistic]:.4f} | {served['brier'][statistic]:.4f} "
            f"| {served['ece'][statistic]:.4f} | {unscaled['nll'][statistic]:.4f} "
            f"| {unscaled['ece'][statistic]:.4f} |"
        )
    confident = report["confident_errors"]
    lines += [
        "",
        f"Mistakes served with confidence >= {confident['threshold']}: "
        f"{confident['count']} of {confident['errors']} ({confident['share']:.1%}).",
        "",
        "## Per class (all seeds pooled)",
        "",
        "| class | precision | recall | support |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row['class']} | {row['precision']:.4f} | {row['recall']:.4f} "
        f"| {row['support']} |"
        for row in report["per_class"]
    ]
    lines += [
        "",
        "## Confusion matrix (rows true, columns predicted, all seeds summed)",
        "",
        "| true \\ predicted | " + " | ".join(map(str, CLASSES)) + " |",
        "|---" * (len(CLASSES) + 1) + "|",
    ]
    for digit, row in zip(CLASSES, report["confusion_matrix"], strict=True):
        lines.append(f"| {digit} | " + " | ".join(map(str, row)) + " |")
    lines += ["", "## Most confused pairs", ""]
    lines += [
        f"- true {pair['true']} read as {pair['predicted']}: {pair['count']}"
        for pair in report["most_confused"]
    ] or ["- none"]
    lines += ["", verdict_line(report), ""]
    return "\n".join(lines)


def write_report(report: dict, output_dir: Path) -> list[Path]:
    """Write evaluation.json and evaluation.md to `output_dir`; return both paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / REPORT_JSON_FILENAME
    text_path = output_dir / REPORT_TEXT_FILENAME
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    text_path.write_text(render_text(report))
    return [json_path, text_path]
