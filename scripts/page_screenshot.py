"""Screenshot the draw-a-digit page with a drawn digit and its bars.

    python -m scripts.page_screenshot [--url http://127.0.0.1:8000] [--digit 3]

Needs a running service (`make run`), the dev environment (Playwright) and
Debian's chromium. Writes docs/draw-a-digit.png, which the README shows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.drawn_digits import DRAWN_DIGITS, draw_with_mouse

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "draw-a-digit.png"
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--digit", type=int, default=3, choices=sorted(DRAWN_DIGITS))
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(args.url + "/")
        page.get_by_text("Ready:").wait_for()
        draw_with_mouse(page, DRAWN_DIGITS[args.digit])
        strokes = len(DRAWN_DIGITS[args.digit])
        expect(page.locator(f"main[data-answered='{strokes}']")).to_have_count(1)
        page.wait_for_timeout(400)  # the bars' width transition
        OUTPUT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(OUTPUT), full_page=True)
        print(f"wrote {OUTPUT}: {page.get_by_role('status').text_content()}")
        browser.close()


if __name__ == "__main__":
    main()
