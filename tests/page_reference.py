"""A Python reference of the page's preprocessing (serving/static/preprocess.js).

The same steps, written independently in the obvious numpy-free way, so a test
can run both on the same pads and require identical grids. Float operations are
written in the same order as the JavaScript, so results match bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

GRID = 8
BLOCK = 4
FRAME = GRID * BLOCK
SUBSAMPLES = 4
INK_THRESHOLD = 128


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def preprocess(ink: Sequence[int], width: int, height: int) -> list[int] | None:
    """Pad ink (0..255 per pixel, row-major) to 64 counts 0..16, None if empty."""
    on_pixels = [
        (x, y)
        for y in range(height)
        for x in range(width)
        if ink[y * width + x] >= INK_THRESHOLD
    ]
    if not on_pixels:
        return None
    left = min(x for x, _ in on_pixels)
    right = max(x for x, _ in on_pixels)
    top = min(y for _, y in on_pixels)
    bottom = max(y for _, y in on_pixels)
    box_width, box_height = right - left + 1, bottom - top + 1
    scale = FRAME / max(box_width, box_height)
    out_width = max(1, min(FRAME, round_half_up(box_width * scale)))
    out_height = max(1, min(FRAME, round_half_up(box_height * scale)))
    offset_x = (FRAME - out_width) // 2
    offset_y = (FRAME - out_height) // 2

    frame = [[0] * FRAME for _ in range(FRAME)]
    for ty in range(out_height):
        for tx in range(out_width):
            on = 0
            for sy in range(SUBSAMPLES):
                py = top + math.floor(
                    ((ty + (sy + 0.5) / SUBSAMPLES) * box_height) / out_height
                )
                for sx in range(SUBSAMPLES):
                    px = left + math.floor(
                        ((tx + (sx + 0.5) / SUBSAMPLES) * box_width) / out_width
                    )
                    on += ink[py * width + px] >= INK_THRESHOLD
            if 2 * on >= SUBSAMPLES * SUBSAMPLES:
                frame[offset_y + ty][offset_x + tx] = 1

    return [
        sum(
            frame[by * BLOCK + y][bx * BLOCK + x]
            for y in range(BLOCK)
            for x in range(BLOCK)
        )
        for by in range(GRID)
        for bx in range(GRID)
    ]
