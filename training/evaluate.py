"""Report test accuracy over several split seeds: python -m training.evaluate."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys

from training.config import config_from_env
from training.train import train

# The accuracy bar this architecture must clear with 25 epochs (see README).
TARGET_MEAN_ACCURACY = 0.980
TARGET_MIN_ACCURACY = 0.975


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


def main(argv: list[str] | None = None) -> int:
    """Train one model per seed and print the per-seed accuracy table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seeds", type=parse_seeds, default="0-4", help='e.g. "0-4" or "0,3,7"'
    )
    args = parser.parse_args(argv)
    try:
        base = config_from_env()
    except ValueError as error:
        parser.error(str(error))
    accuracies = []
    print(f"{'seed':>4}  {'test accuracy':>13}", flush=True)
    for seed in args.seeds:
        result = train(dataclasses.replace(base, seed=seed))
        accuracies.append(result.test_accuracy)
        print(f"{seed:>4}  {result.test_accuracy:>13.4f}", flush=True)
    mean, worst = statistics.mean(accuracies), min(accuracies)
    print(f"mean  {mean:>13.4f}\nmin   {worst:>13.4f}")
    met = mean >= TARGET_MEAN_ACCURACY and worst >= TARGET_MIN_ACCURACY
    print(
        f"target: mean >= {TARGET_MEAN_ACCURACY:.3f} and min >= "
        f"{TARGET_MIN_ACCURACY:.3f}: {'met' if met else 'NOT met'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
