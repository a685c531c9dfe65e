"""Evaluate the recipe over several split seeds: python -m training.evaluate.

For each seed: train on its training split, fit the temperature on k-fold
logits of that training split, score the test split. Prints the report and
writes it to artifacts/ (evaluation.json, evaluation.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from training.calibration import calibrate
from training.config import TrainConfig, config_from_env
from training.data import load_splits
from training.metrics import probabilities_from_logits, score
from training.model import predict_logits
from training.report import (
    SeedResult,
    build_report,
    render_text,
    write_report,
)
from training.train import train


def parse_seeds(text: str) -> list[int]:
    """Parse "0-4" or "0,2,7" into a list of seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            start, _, end = part.partition("-")
            seeds.extend(range(int(start), int(end or start) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seed list: {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"no seeds in {text!r} (try 0-4)")
    return seeds


def evaluate_seed(config: TrainConfig) -> tuple[SeedResult, np.ndarray, np.ndarray]:
    """Train, calibrate and score one split seed.

    Returns the result, the (n,) test labels and the (n, 10) served probabilities.
    """
    splits = load_splits(config.seed, config.test_fraction)
    result = train(config, splits)
    temperature = calibrate(config, splits.x_train, splits.y_train)
    logits = predict_logits(result.model, splits.x_test)
    served = probabilities_from_logits(logits, temperature)
    seed_result = SeedResult(
        seed=config.seed,
        temperature=temperature,
        served=score(served, splits.y_test),
        unscaled=score(probabilities_from_logits(logits), splits.y_test),
    )
    return seed_result, splits.y_test, served


def main(argv: list[str] | None = None) -> int:
    """Evaluate every seed, print and write the report; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=parse_seeds, default="0-4", help='e.g. "0-4" or "0,3,7"'
    )
    args = parser.parse_args(argv)
    try:
        base = config_from_env()
    except ValueError as error:
        parser.error(str(error))
    results, labels, predicted = [], [], []
    for seed in args.seeds:
        result, seed_labels, probabilities = evaluate_seed(
            dataclasses.replace(base, seed=seed)
        )
        results.append(result)
        labels.append(seed_labels)
        predicted.append(probabilities.argmax(axis=1))
        print(
            f"seed {seed}: accuracy {result.served.accuracy:.4f}, "
            f"NLL {result.served.nll:.4f}, ECE {result.served.ece:.4f}, "
            f"temperature {result.temperature:.3f}",
            flush=True,
        )
    report = build_report(results, np.concatenate(labels), np.concatenate(predicted))
    paths = write_report(report, base.output_path)
    print(f"wrote {', '.join(map(str, paths))}\n")
    # The report ends with the target line, so it is the last line printed.
    print(render_text(report), end="")
    return 0 if all(report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
