import numpy as np
import pytest
import torch

from contract import IMAGE_SHAPE, INPUT_SIZE
from training.augment import SHIFTS, shift_images, shift_some


def reference_shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move an 8x8 image by (dy, dx) one pixel at a time, filling with zeros."""
    height, width = image.shape
    moved = np.zeros_like(image)
    for row in range(height):
        for col in range(width):
            if 0 <= row - dy < height and 0 <= col - dx < width:
                moved[row, col] = image[row - dy, col - dx]
    return moved


def test_eight_directions_each_one_pixel():
    assert len(SHIFTS) == 8 and len({tuple(s.tolist()) for s in SHIFTS}) == 8
    assert SHIFTS.abs().max() == 1 and (SHIFTS.abs().sum(dim=1) > 0).all()


def test_shift_images_matches_a_pixel_by_pixel_reference(digits):
    features = torch.from_numpy(digits[0][: len(SHIFTS)])
    moved = shift_images(features, SHIFTS)
    assert moved.shape == (len(SHIFTS), INPUT_SIZE)
    for row, (dy, dx) in enumerate(SHIFTS.tolist()):
        expected = reference_shift(features[row].numpy().reshape(IMAGE_SHAPE), dy, dx)
        np.testing.assert_array_equal(moved[row].numpy().reshape(IMAGE_SHAPE), expected)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_shift_some_moves_that_share_of_the_batch_reproducibly(digits, fraction):
    batch = torch.from_numpy(digits[0][:64])
    first = shift_some(batch, fraction, torch.Generator().manual_seed(3))
    again = shift_some(batch, fraction, torch.Generator().manual_seed(3))
    other = shift_some(batch, fraction, torch.Generator().manual_seed(4))
    changed = (first != batch).any(dim=1)
    # A shifted digit always differs: every digit has ink next to empty pixels.
    assert int(changed.sum()) == round(fraction * 64)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(batch, torch.from_numpy(digits[0][:64]))  # input untouched


def test_no_fraction_means_no_change(digits):
    batch = torch.from_numpy(digits[0][:10])
    assert torch.equal(shift_some(batch, 0.0, torch.Generator()), batch)
