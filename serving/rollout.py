"""One verified model for every worker, replaced only by a verified one.

The launcher reads and checks the model file before it forks the workers, and
again on each SIGHUP, before granian replaces them. Workers are forked from it
and open the bytes it verified; they never read the file. So a file changed,
truncated or corrupted under a running server changes nothing until a reload,
a reload with a bad file keeps the old model, and every worker always serves
the same version (`GET /model`, `digits_model_info`).

Roll out a new model: write it beside the old one, rename it over the old one
(atomic on one filesystem), send SIGHUP.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from serving.model import ModelLoadError, Predictor, read_model_bytes

logger = logging.getLogger("serving.rollout")


@dataclass(frozen=True)
class VerifiedModel:
    """A model file's bytes, as read and checked by the launcher."""

    path: str
    data: bytes
    sha256: str


# Set in the launcher before the workers are forked, and on each good reload.
_verified: VerifiedModel | None = None


def verify(path: str | Path) -> VerifiedModel:
    """Read the file once and open it as the service would; raise ModelLoadError."""
    data = read_model_bytes(Path(path))
    Predictor.from_bytes(data, path)  # the same checks a worker makes
    return VerifiedModel(str(path), data, hashlib.sha256(data).hexdigest())


def adopt(model: VerifiedModel) -> None:
    """Make `model` the one the workers forked from now on will serve."""
    global _verified
    _verified = model


def verified_model(path: str | Path) -> VerifiedModel | None:
    """The launcher's verified model for `path`, if this process has one."""
    if _verified is not None and _verified.path == str(path):
        return _verified
    return None


def load_predictor(path: str | Path, intra_op_threads: int) -> Predictor:
    """A worker's predictor: the launcher's verified bytes, else the file."""
    model = verified_model(path)
    if model is None:  # not started by the launcher (tests, an embedding app)
        return Predictor.load(path, intra_op_threads)
    return Predictor.from_bytes(model.data, model.path, intra_op_threads)


def reload_model(path: str | Path) -> bool:
    """On SIGHUP, in the launcher: adopt the file if it is good; say so either way."""
    from serving.telemetry import record_reload

    current = verified_model(path)
    try:
        model = verify(path)
    except ModelLoadError as error:
        kept = current.sha256[:12] if current else "nothing"
        logger.error(f"model reload refused: {error}; still serving sha256 {kept}")
        record_reload(accepted=False)
        return False
    adopt(model)
    logger.info(f"model reload: serving {model.path} (sha256 {model.sha256[:12]})")
    record_reload(accepted=True)
    return True
