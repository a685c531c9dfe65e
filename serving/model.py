"""Load the ONNX model with onnxruntime, check it against the contract, predict."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from contract import (
    CLASSES,
    INPUT_NAME,
    INPUT_SIZE,
    OUTPUT_NAME,
    PIXEL_MAX,
    PIXEL_MIN,
    MetadataKey,
)

FLOAT_TENSOR = "tensor(float)"
# onnxruntime's load errors can quote large parts of the file; keep the line short.
MAX_REASON_CHARS = 200


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable or does not fit the API contract."""


@dataclass(frozen=True)
class ModelInfo:
    """What the loaded file says about itself (graph, metadata, checksum)."""

    path: str
    sha256: str
    metadata: dict[str, str]
    input_name: str
    input_type: str
    input_shape: list[int | str | None]
    output_name: str
    output_type: str
    output_shape: list[int | str | None]

    def describe(self) -> dict[str, Any]:
        """Summarise the file for GET /model, from its graph and metadata_props."""
        meta = self.metadata
        return {
            "name": meta[MetadataKey.MODEL_NAME],
            "version": meta[MetadataKey.MODEL_VERSION],
            "sha256": self.sha256,
            "opset": int(meta[MetadataKey.OPSET])
            if MetadataKey.OPSET in meta
            else None,
            # check_tensor guarantees both are float32 tensors.
            "input": {
                "name": self.input_name,
                "dtype": "float32",
                "shape": self.input_shape,
            },
            "output": {
                "name": self.output_name,
                "dtype": "float32",
                "shape": self.output_shape,
            },
            "pixel_range": [
                float(meta[MetadataKey.PIXEL_MIN]),
                float(meta[MetadataKey.PIXEL_MAX]),
            ],
            "classes": json.loads(meta[MetadataKey.CLASSES]),
            "normalization": meta[MetadataKey.NORMALIZATION],
            "metrics": {
                key: float(meta[key]) for key in MetadataKey.METRICS if key in meta
            },
            "train_config": json.loads(meta.get(MetadataKey.TRAIN_CONFIG, "{}")),
            "metadata": meta,
        }


def read_model_bytes(path: Path) -> bytes:
    """Read the file, explaining how to produce it when it is missing."""
    if path.exists() and not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    if not path.is_file():
        raise ModelLoadError(
            f"model file not found: {path} "
            "(create it with `python -m training.export`, or set SERVE_MODEL_PATH)"
        )
    try:
        return path.read_bytes()
    except OSError as error:  # unreadable: permissions, I/O errors
        raise ModelLoadError(
            f"cannot read the model file {path}: {error.strerror or error}"
        ) from None


def create_session(model_bytes: bytes, path: Path, intra_op_threads: int):
    """Open an onnxruntime session on the CPU, or raise ModelLoadError."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises several unrelated types
        first_line = str(error).strip().splitlines()[0] if str(error) else ""
        raise ModelLoadError(
            f"cannot load {path} as an ONNX model: {first_line[:MAX_REASON_CHARS]}"
        ) from error


def check_tensor(kind: str, tensor, name: str, width: int) -> None:
    """Require a float tensor `name` of shape (batch, width)."""
    shape = list(tensor.shape)
    if tensor.name != name or tensor.type != FLOAT_TENSOR or len(shape) != 2:
        raise ModelLoadError(
            f"model {kind} must be {name!r} {FLOAT_TENSOR} [batch, {width}], "
            f"got {tensor.name!r} {tensor.type} {shape}"
        )
    if shape[1] != width or isinstance(shape[0], int):
        raise ModelLoadError(
            f"model {kind} {name!r} must have shape [batch, {width}] with a "
            f"dynamic batch, got {shape}"
        )


def check_metadata(metadata: dict[str, str]) -> None:
    """Require the metadata to state the same contract serving enforces."""
    missing = [key for key in MetadataKey.REQUIRED if key not in metadata]
    if missing:
        raise ModelLoadError(
            f"model metadata lacks {', '.join(missing)}: re-export it with "
            "`python -m training.export`"
        )
    try:
        stated = {
            MetadataKey.INPUT_SIZE: int(metadata[MetadataKey.INPUT_SIZE]),
            MetadataKey.PIXEL_MIN: float(metadata[MetadataKey.PIXEL_MIN]),
            MetadataKey.PIXEL_MAX: float(metadata[MetadataKey.PIXEL_MAX]),
            MetadataKey.CLASSES: json.loads(metadata[MetadataKey.CLASSES]),
        }
    except ValueError as error:
        raise ModelLoadError(f"model metadata is malformed: {error}") from None
    expected = {
        MetadataKey.INPUT_SIZE: INPUT_SIZE,
        MetadataKey.PIXEL_MIN: PIXEL_MIN,
        MetadataKey.PIXEL_MAX: PIXEL_MAX,
        MetadataKey.CLASSES: list(CLASSES),
    }
    for key, value in expected.items():
        if stated[key] != value:
            raise ModelLoadError(
                f"model metadata {key}={stated[key]!r} does not match the API "
                f"contract ({value!r})"
            )


class Predictor:
    """One onnxruntime session plus the facts about the model it runs."""

    def __init__(self, session: onnxruntime.InferenceSession, info: ModelInfo):
        self.session = session
        self.info = info

    @classmethod
    def load(cls, path: str | Path, intra_op_threads: int = 1) -> Predictor:
        """Load and check the model at `path`; raise ModelLoadError if unusable."""
        path = Path(path)
        return cls.from_bytes(read_model_bytes(path), path, intra_op_threads)

    @classmethod
    def from_bytes(
        cls, model_bytes: bytes, path: str | Path, intra_op_threads: int = 1
    ) -> Predictor:
        """Check and open a model read from `path`; raise ModelLoadError if unusable."""
        path = Path(path)
        session = create_session(model_bytes, path, intra_op_threads)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"model must have one input and one output, got {len(inputs)} "
                f"and {len(outputs)}"
            )
        model_input, model_output = inputs[0], outputs[0]
        check_tensor("input", model_input, INPUT_NAME, INPUT_SIZE)
        check_tensor("output", model_output, OUTPUT_NAME, len(CLASSES))
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        check_metadata(metadata)
        info = ModelInfo(
            path=str(path),
            sha256=hashlib.sha256(model_bytes).hexdigest(),
            metadata=metadata,
            input_name=model_input.name,
            input_type=model_input.type,
            input_shape=list(model_input.shape),
            output_name=model_output.name,
            output_type=model_output.type,
            output_shape=list(model_output.shape),
        )
        return cls(session, info)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Map (n, 64) float32 raw pixels to (n, 10) float32 class probabilities."""
        (probabilities,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: features})
        return probabilities

    def predict_one(self, pixels: np.ndarray) -> dict[str, int | float]:
        """Classify one image's (64,) float32 pixels: the API's answer object.

        The same answer as predict() on one row, without numpy's reductions:
        between two requests their code leaves the CPU's caches, and on ten
        values Python's max and index cost less than the argmax and max calls.
        """
        probabilities = self.probabilities(pixels.reshape(1, -1))[0].tolist()
        confidence = max(probabilities)  # the first of equals, like argmax
        return {
            "prediction": CLASSES[probabilities.index(confidence)],
            "confidence": confidence,
        }

    def predict(self, features: np.ndarray) -> Predictions:
        """Classify (n, 64) float32 raw pixels: labels and their probabilities."""
        probabilities = self.probabilities(features)
        # The largest probability is the predicted class's (argmax's tie rule
        # picks the first of equals, and max returns that same value).
        indices = probabilities.argmax(axis=1)
        return Predictions(CLASS_LABELS[indices], probabilities.max(axis=1))


CLASS_LABELS = np.asarray(CLASSES)


@dataclass(frozen=True)
class Predictions:
    """Predicted labels (n,) int and their probabilities (n,) float32."""

    labels: np.ndarray
    confidences: np.ndarray

    def as_dicts(self) -> list[dict[str, int | float]]:
        """Return the API's {"prediction", "confidence"} objects, in row order."""
        return [
            {"prediction": label, "confidence": confidence}
            for label, confidence in zip(
                self.labels.tolist(), self.confidences.tolist(), strict=True
            )
        ]
