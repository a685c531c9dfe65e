"""Train (or reuse a matching checkpoint), calibrate, and write artifacts/model.onnx.

Usage: python -m training.export   (TRAIN_* env vars override TrainConfig)

The curves of history.json are drawn by a separate step, `python -m
training.plots`, so that matplotlib stays off this path (see README).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contract import MODEL_CARD_FILENAME, MODEL_FILENAME
from training.calibration import calibrate
from training.config import TrainConfig, config_from_env
from training.data import Splits, load_digit_arrays, load_splits
from training.history import HISTORY_FILENAME, save_history
from training.metrics import Scores, probabilities_from_logits, score
from training.model import predict_logits
from training.onnx_export import (
    OPSET_VERSION,
    PARITY_TOLERANCE,
    check_parity,
    export_onnx,
    model_version,
)
from training.train import (
    CHECKPOINT_FILENAME,
    TrainResult,
    load_checkpoint,
    save_checkpoint,
    train,
)


def log(message: str) -> None:
    """Print a progress line immediately (export runs inside builds and CI)."""
    print(message, flush=True)


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Log how long the block took, so the README's breakdown can be re-measured."""
    started = time.perf_counter()
    yield
    log(f"time: {phase} {time.perf_counter() - started:.2f}s")


def obtain_trained_model(config: TrainConfig, splits: Splits) -> TrainResult:
    """Reuse the checkpoint if it was trained with `config`; otherwise train."""
    checkpoint_path = config.output_path / CHECKPOINT_FILENAME
    result = load_checkpoint(config, checkpoint_path)
    if result is not None:
        log(f"reusing {checkpoint_path}: same config and training code")
        return result
    log(f"training: {json.dumps(config.to_dict(), sort_keys=True)}")
    with timed("training"):
        result = train(config, splits, progress=log)
    log(f"fitting the temperature on {config.calibration_folds}-fold logits")
    with timed(f"calibration ({config.calibration_folds} models)"):
        result.temperature = calibrate(config, splits.x_train, splits.y_train)
    log(f"temperature {result.temperature:.4f}")
    save_checkpoint(result, checkpoint_path)
    return result


def test_scores(result: TrainResult, splits: Splits) -> tuple[Scores, Scores]:
    """Score the model on the test split, as served and before scaling."""
    logits = predict_logits(result.model, splits.x_test)
    served = probabilities_from_logits(logits, result.temperature)
    unscaled = probabilities_from_logits(logits)
    return score(served, splits.y_test), score(unscaled, splits.y_test)


def build_model_card(
    result: TrainResult,
    onnx_bytes: bytes,
    parity_error: float,
    scores: tuple[Scores, Scores],
) -> dict:
    """Summarise the exported file: checksum, metrics, config and parity."""
    served, unscaled = scores
    return {
        "file": MODEL_FILENAME,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "size_bytes": len(onnx_bytes),
        "model_version": model_version(result.config),
        "opset": OPSET_VERSION,
        "test_accuracy": round(result.test_accuracy, 6),
        "temperature": result.temperature,
        "test_scores": served.to_dict(),
        "test_scores_before_scaling": unscaled.to_dict(),
        "final_epoch": result.history[-1].__dict__,
        "train_config": result.config.to_dict(),
        "parity": {
            "rows": "all 1797 digits",
            "temperature": result.temperature,
            "max_abs_difference": parity_error,
            "tolerance": PARITY_TOLERANCE,
        },
    }


def run_export(config: TrainConfig) -> Path:
    """Produce model.onnx, model.json and history.json in config.output_dir."""
    output_dir = config.output_path
    output_dir.mkdir(parents=True, exist_ok=True)
    splits = load_splits(config.seed, config.test_fraction)
    result = obtain_trained_model(config, splits)
    save_history(result.history, output_dir / HISTORY_FILENAME)
    scores = test_scores(result, splits)

    log("exporting to ONNX")
    with timed("ONNX export and parity check"):
        model = export_onnx(result.model, result.config, result.temperature, scores[0])
        onnx_bytes = model.SerializeToString(deterministic=True)
        features, _ = load_digit_arrays()
        parity_error = check_parity(
            result.model, onnx_bytes, features, result.temperature
        )
    log(f"parity on {len(features)} rows: max abs difference {parity_error:.2g}")

    model_path = output_dir / MODEL_FILENAME
    model_path.write_bytes(onnx_bytes)
    card = build_model_card(result, onnx_bytes, parity_error, scores)
    card_path = output_dir / MODEL_CARD_FILENAME
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    served = scores[0]
    log(
        f"wrote {model_path} ({len(onnx_bytes)} bytes, sha256 {card['sha256'][:12]}): "
        f"test accuracy {served.accuracy:.4f}, NLL {served.nll:.4f}, "
        f"ECE {served.ece:.4f} at temperature {result.temperature:.4f}"
    )
    return model_path


def main() -> int:
    """Entry point of `python -m training.export`."""
    started = time.perf_counter()
    # torch, scipy and scikit-learn leave ~230,000 long-lived objects behind at
    # import. Frozen, they are skipped by the full collection the interpreter runs
    # at exit: 0.4 s of this command's 5 s budget (measured, see README).
    gc.freeze()
    try:
        run_export(config_from_env())
    except (ValueError, RuntimeError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    except PermissionError as error:
        # Typically a bind-mounted artifacts/ owned by another user (Compose's
        # train service runs as HOST_UID:HOST_GID, 1000:1000 unless told).
        print(
            f"export failed: cannot write {error.filename}: permission denied "
            f"(running as uid {os.getuid()}); make the output directory writable "
            "for this user, or run as its owner (with Compose: HOST_UID=$(id -u) "
            "HOST_GID=$(id -g))",
            file=sys.stderr,
        )
        return 1
    log(f"done in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
