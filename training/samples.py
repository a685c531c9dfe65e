"""Write the draw-a-digit page's sample digits: real test-split rows.

    python -m training.samples

The page ships them (serving/static/samples.json) so a visitor can see a
correct prediction at once. They come from the test split of the default
config, which the shipped model never trained on: the first SAMPLES_PER_DIGIT
rows of each digit, as rounds of 0 to 9. A test regenerates them to check the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from contract import CLASSES
from training.config import TrainConfig
from training.data import load_splits

SAMPLES_PER_DIGIT = 2
SAMPLES_PATH = Path(__file__).resolve().parents[1] / "serving/static/samples.json"


def page_samples(config: TrainConfig) -> list[dict[str, object]]:
    """[{"label": digit, "features": [64 ints]}], in rounds of 0 to 9."""
    splits = load_splits(config.seed, config.test_fraction)
    return [
        {
            "label": digit,
            "features": splits.x_test[splits.y_test == digit][round_]
            .astype(int)
            .tolist(),
        }
        for round_ in range(SAMPLES_PER_DIGIT)
        for digit in CLASSES
    ]


def render(samples: list[dict[str, object]]) -> str:
    """One sample per line: small diffs, readable file."""
    lines = ",\n".join(json.dumps(sample, separators=(",", ":")) for sample in samples)
    return f"[\n{lines}\n]\n"


def main() -> None:
    SAMPLES_PATH.write_text(render(page_samples(TrainConfig())))
    print(f"wrote {SAMPLES_PATH}")


if __name__ == "__main__":
    main()
