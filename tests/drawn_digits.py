"""Digits drawn as a visitor would, as mouse strokes on the page's pad.

Shared by tests/test_page.py and scripts/page_screenshot.py. Points are in the
canvas's own pixels (PAD_SIZE square, serving/static/index.html).
"""

from __future__ import annotations

import math

PAD_SIZE = 280

Stroke = list[tuple[float, float]]


def ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 48) -> Stroke:
    """A closed ellipse, drawn clockwise from the top."""
    return [
        (
            cx + rx * math.sin(2 * math.pi * i / points),
            cy - ry * math.cos(2 * math.pi * i / points),
        )
        for i in range(points + 1)
    ]


# Digits as a visitor draws them, in pad pixels, filling most of the height.
# Sevens get the crossbar most of the data set's sevens have. A thin "1" is
# left out: the data set's ones are thick, and one pen stroke is read as a 1
# with low confidence or as a 2 (see the README).
DRAWN_DIGITS: dict[int, list[Stroke]] = {
    0: [ellipse(140, 140, 62, 105)],
    2: [[(80, 90), (110, 45), (170, 40), (200, 90), (180, 150), (80, 245), (210, 245)]],
    3: [[(80, 55), (190, 45), (140, 130), (200, 185), (160, 240), (80, 235)]],
    4: [[(175, 245), (175, 35), (70, 175), (215, 175)]],
    5: [
        [(195, 45), (100, 45), (90, 125), (160, 115), (200, 170), (170, 235), (90, 230)]
    ],
    6: [
        [(180, 35), (115, 100), (90, 190), (130, 245), (190, 215), (180, 160)]
        + [(120, 150), (92, 185)]
    ],
    7: [[(75, 45), (205, 45), (125, 245)], [(95, 150), (205, 150)]],
    8: [
        [(175, 60), (140, 40), (100, 70), (130, 125), (185, 180), (140, 245)]
        + [(95, 185), (150, 125), (180, 75), (175, 60)]
    ],
    9: [
        [(190, 90), (150, 45), (100, 60), (95, 110), (140, 130), (190, 90), (185, 245)]
    ],
}


def draw_with_mouse(page, strokes: list[Stroke]) -> None:
    """Draw `strokes` on the page's pad (data-testid "pad") with the mouse."""
    box = page.get_by_test_id("pad").bounding_box()
    scale = box["width"] / PAD_SIZE
    for stroke in strokes:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=4)
        page.mouse.up()
