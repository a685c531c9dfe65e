"""Random one-pixel shifts of the 8x8 digits, the training set's augmentation."""

from __future__ import annotations

import torch

from contract import IMAGE_SHAPE

# The eight neighbours of (0, 0): every row picked for a shift really moves.
SHIFTS = torch.tensor(
    [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
)

# Where each pixel of an image sits once a one-pixel zero border is added.
PADDED_ROWS = torch.arange(IMAGE_SHAPE[0]).view(1, -1, 1) + 1
PADDED_COLS = torch.arange(IMAGE_SHAPE[1]).view(1, 1, -1) + 1


def shift_images(pixels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Move each flattened 8x8 image by its (dy, dx) offset, filling with 0.

    `pixels` is (n, 64) float raw pixels, `offsets` (n, 2) int in -1..1; the
    result is (n, 64). Ink pushed over the edge is lost: the background is 0.
    """
    height, width = IMAGE_SHAPE
    padded = torch.nn.functional.pad(pixels.view(-1, height, width), (1, 1, 1, 1))
    rows = PADDED_ROWS - offsets[:, :1, None]  # (n, 8, 1)
    cols = PADDED_COLS - offsets[:, None, 1:]  # (n, 1, 8)
    batch = torch.arange(len(pixels)).view(-1, 1, 1)
    # (n, 8, 8): output pixel (r, c) reads input pixel (r - dy, c - dx).
    return padded[batch, rows, cols].reshape(len(pixels), height * width)


def shift_some(
    pixels: torch.Tensor, fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """Return a copy of the (n, 64) batch with a random `fraction` of rows shifted.

    The rows and their directions come from `generator`, so runs are reproducible.
    """
    count = round(fraction * len(pixels))
    if count == 0:
        return pixels
    chosen = torch.randperm(len(pixels), generator=generator)[:count]
    directions = torch.randint(len(SHIFTS), (count,), generator=generator)
    shifted = pixels.clone()
    shifted[chosen] = shift_images(pixels[chosen], SHIFTS[directions])
    return shifted
