"""The digits MLP: 64 -> 128 -> 64 -> 10 with ReLU, normalization included."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from contract import INPUT_SIZE, NUM_CLASSES, PIXEL_MAX

HIDDEN_SIZES = (128, 64)


class ScalePixels(nn.Module):
    """Map raw pixels 0..16 to 0..1.

    This is the model's first step, so training, evaluation and the exported
    graph share one normalization and clients send raw pixels.
    """

    def __init__(self, pixel_max: float = PIXEL_MAX) -> None:
        super().__init__()
        self.pixel_max = pixel_max

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels / self.pixel_max


class DigitsMLP(nn.Module):
    """Classify raw (batch, 64) pixels into (batch, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        first, second = HIDDEN_SIZES
        self.layers = nn.Sequential(
            ScalePixels(),
            nn.Linear(INPUT_SIZE, first),
            nn.ReLU(),
            nn.Linear(first, second),
            nn.ReLU(),
            nn.Linear(second, NUM_CLASSES),
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.layers(pixels)


class DigitsClassifier(nn.Module):
    """The served form of the MLP: raw pixels in, class probabilities out.

    The logits are divided by the calibration temperature before the softmax;
    the exported graph keeps that division as a Div node.
    """

    def __init__(self, mlp: DigitsMLP, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.mlp = mlp
        self.temperature = temperature

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(pixels) / self.temperature, dim=-1)


def build_model(seed: int) -> DigitsMLP:
    """Create a freshly initialised MLP whose weights depend only on `seed`."""
    torch.manual_seed(seed)
    return DigitsMLP()


def predict_logits(mlp: DigitsMLP, pixels: np.ndarray) -> np.ndarray:
    """Return (n, 10) float32 logits for (n, 64) float32 raw pixels."""
    mlp.eval()
    with torch.no_grad():
        return mlp(torch.from_numpy(pixels)).numpy()


def predict_probabilities(
    mlp: DigitsMLP, pixels: np.ndarray, temperature: float = 1.0
) -> np.ndarray:
    """Return (n, 10) float32 class probabilities for (n, 64) float32 raw pixels."""
    classifier = DigitsClassifier(mlp, temperature).eval()
    with torch.no_grad():
        return classifier(torch.from_numpy(pixels)).numpy()
