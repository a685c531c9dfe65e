"""The seed's original design, kept as the benchmark baseline: FastAPI + torch.

Written the way the FastAPI tutorials and most model-serving posts do it: a
pydantic request model validates the body, the MLP is loaded from the training
checkpoint at import, and a plain `def` route (FastAPI runs it in its thread
pool) predicts with torch. bench/run.py starts it with uvicorn from the train
environment, e.g.

    BENCH_CHECKPOINT=artifacts/checkpoint.pt uvicorn bench.fastapi_torch:app
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI
from pydantic import BaseModel, Field

from contract import ARTIFACTS_DIR, INPUT_SIZE, PIXEL_MAX, PIXEL_MIN
from training.model import DigitsClassifier, DigitsMLP

# training.train.CHECKPOINT_FILENAME, spelled out: importing training.train
# pulls in scikit-learn, which would slow the baseline's start unfairly.
CHECKPOINT_PATH = os.environ.get(
    "BENCH_CHECKPOINT", str(Path(ARTIFACTS_DIR) / "checkpoint.pt")
)

Pixel = Annotated[float, Field(ge=PIXEL_MIN, le=PIXEL_MAX)]


class PredictRequest(BaseModel):
    """Body of POST /predict: the seed's contract."""

    features: list[Pixel] = Field(min_length=INPUT_SIZE, max_length=INPUT_SIZE)


class PredictResponse(BaseModel):
    """Body of a successful POST /predict."""

    prediction: int
    confidence: float


def load_classifier(path: str) -> DigitsClassifier:
    """Load the trained MLP and its temperature from a training checkpoint."""
    saved = torch.load(path, weights_only=True)
    mlp = DigitsMLP()
    mlp.load_state_dict(saved["state_dict"])
    # Serve the same calibrated probabilities as the ONNX graph does.
    return DigitsClassifier(mlp, saved["temperature"]).eval()


model = load_classifier(CHECKPOINT_PATH)
app = FastAPI(title="digits baseline: FastAPI + torch")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    """Report that the process is up."""
    return {"status": "ok"}


@app.post("/predict", response_model=PredictResponse)
def predict(request: PredictRequest) -> PredictResponse:
    """Classify one 8x8 image given as 64 raw pixels."""
    with torch.no_grad():
        probabilities = model(torch.tensor([request.features]))  # (1, 10)
    confidence, label = probabilities.max(dim=1)
    return PredictResponse(prediction=label.item(), confidence=confidence.item())
