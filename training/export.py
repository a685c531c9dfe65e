"""Train (or reuse a matching checkpoint) and write artifacts/model.onnx.

Usage: python -m training.export   (TRAIN_* env vars override TrainConfig)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from contract import MODEL_CARD_FILENAME, MODEL_FILENAME
from training.config import TrainConfig, config_from_env
from training.data import load_digit_arrays
from training.onnx_export import (
    OPSET_VERSION,
    PARITY_TOLERANCE,
    check_parity,
    export_onnx,
    model_version,
)
from training.plots import plot_history
from training.train import (
    CHECKPOINT_FILENAME,
    HISTORY_FILENAME,
    TrainResult,
    load_checkpoint,
    save_checkpoint,
    save_history,
    train,
)


def log(message: str) -> None:
    """Print a progress line immediately (export runs inside builds and CI)."""
    print(message, flush=True)


def obtain_trained_model(config: TrainConfig) -> TrainResult:
    """Reuse the checkpoint if it was trained with `config`; otherwise train."""
    checkpoint_path = config.output_path / CHECKPOINT_FILENAME
    result = load_checkpoint(config, checkpoint_path)
    if result is not None:
        log(f"reusing {checkpoint_path}: same config and training code")
        return result
    log(f"training: {json.dumps(config.to_dict(), sort_keys=True)}")
    result = train(config, progress=log)
    save_checkpoint(result, checkpoint_path)
    return result


def build_model_card(
    result: TrainResult, onnx_bytes: bytes, parity_error: float
) -> dict:
    """Summarise the exported file: checksum, metrics, config and parity."""
    return {
        "file": MODEL_FILENAME,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "size_bytes": len(onnx_bytes),
        "model_version": model_version(result.config),
        "opset": OPSET_VERSION,
        "test_accuracy": round(result.test_accuracy, 6),
        "final_epoch": result.history[-1].__dict__,
        "train_config": result.config.to_dict(),
        "parity": {
            "rows": "all 1797 digits",
            "max_abs_difference": parity_error,
            "tolerance": PARITY_TOLERANCE,
        },
    }


def run_export(config: TrainConfig) -> Path:
    """Produce model.onnx, model.json, history and plots in config.output_dir."""
    output_dir = config.output_path
    output_dir.mkdir(parents=True, exist_ok=True)
    result = obtain_trained_model(config)
    save_history(result.history, output_dir / HISTORY_FILENAME)
    plot_history(result.history, output_dir)

    log("exporting to ONNX")
    model = export_onnx(result.model, result.config, result.test_accuracy)
    onnx_bytes = model.SerializeToString(deterministic=True)
    features, _ = load_digit_arrays()
    parity_error = check_parity(result.model, onnx_bytes, features)
    log(f"parity on {len(features)} rows: max abs difference {parity_error:.2g}")

    model_path = output_dir / MODEL_FILENAME
    model_path.write_bytes(onnx_bytes)
    card = build_model_card(result, onnx_bytes, parity_error)
    card_path = output_dir / MODEL_CARD_FILENAME
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    log(
        f"wrote {model_path} ({len(onnx_bytes)} bytes, sha256 {card['sha256'][:12]}, "
        f"test accuracy {result.test_accuracy:.4f})"
    )
    return model_path


def main() -> int:
    """Entry point of `python -m training.export`."""
    started = time.perf_counter()
    try:
        run_export(config_from_env())
    except (ValueError, RuntimeError) as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    log(f"done in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
