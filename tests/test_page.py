"""The draw-a-digit page, in a real browser against a real `python -m serving`.

Playwright drives Debian's chromium (/usr/bin/chromium; `make test` installs
it with apt when it is missing). The pad is drawn on with mouse strokes, as a
visitor would.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import serving_process
from tests.drawn_digits import DRAWN_DIGITS, PAD_SIZE, draw_with_mouse
from tests.page_reference import preprocess as reference_preprocess

CHROMIUM = Path("/usr/bin/chromium")
NO_ANSWER = "–"


@pytest.fixture(scope="module")
def base_url(onnx_path, tmp_path_factory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("page") / "server.log"
    with serving_process(onnx_path, log_path, workers=1) as (_, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "install chromium: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


class Visit:
    """One page load, with every request and console error it caused."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.page: Page = self.context.new_page()
        self.requests: list[str] = []
        self.sent = 0  # inference requests the visit has made the page send
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on(
            "console",
            lambda message: (
                message.type == "error" and self.errors.append(message.text)
            ),
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(base_url + "/")
        self.page.get_by_text("Ready:").wait_for()

    def testid(self, name: str):
        return self.page.get_by_test_id(name)

    def infer_requests(self) -> list[str]:
        return [url for url in self.requests if url.endswith("/infer")]

    def draw(self, strokes: list[list[tuple[float, float]]]) -> None:
        """Draw polylines given in pad pixels (0..280) with the mouse."""
        draw_with_mouse(self.page, strokes)
        self.sent += len(strokes)  # one request a stroke

    def wait_for_answer(self) -> str:
        """The digit shown once the page has the answer to its latest request.

        Each stroke sends one request; the page marks which one it shows.
        """
        answered = self.page.locator(f"main[data-answered='{self.sent}']")
        expect(answered).to_have_count(1)
        return self.testid("prediction").text_content()

    def show_sample(self) -> None:
        self.testid("sample").click()
        self.sent += 1

    def status(self):
        return self.page.get_by_role("status")


@pytest.fixture()
def visit(browser, base_url) -> Iterator[Visit]:
    opened = Visit(browser, base_url)
    yield opened
    assert opened.errors == [], opened.errors
    outside = [url for url in opened.requests if not url.startswith(base_url + "/")]
    assert outside == [], f"requests left the page's origin: {outside}"
    opened.context.close()


# Reads the pad's ink (its alpha channel) in the page, as the page itself does.
PAD_INK = """() => {
    const pad = document.querySelector('[data-testid=pad]');
    const { data } = pad.getContext('2d').getImageData(0, 0, pad.width, pad.height);
    return Array.from({ length: pad.width * pad.height }, (_, i) => data[i * 4 + 3]);
}"""


@pytest.mark.parametrize("digit", sorted(DRAWN_DIGITS))
def test_a_drawn_digit_is_recognised(visit, digit):
    visit.draw(DRAWN_DIGITS[digit])
    assert visit.wait_for_answer() == str(digit)
    confidence = visit.testid("confidence").text_content()
    assert re.fullmatch(r"(>99\.9|\d{1,3}\.\d)%", confidence), confidence
    bars = visit.page.locator(".bar-row")
    assert bars.count() == 10
    assert visit.page.locator(".bar-row.best .bar-digit").text_content() == str(digit)
    assert len(visit.infer_requests()) == len(DRAWN_DIGITS[digit])  # one a stroke


def test_the_grid_shows_what_was_sent(visit):
    visit.draw(DRAWN_DIGITS[7])
    visit.wait_for_answer()
    cells = visit.testid("grid").locator(".cell").all_text_contents()
    assert len(cells) == 64
    values = [int(cell) for cell in cells]
    assert all(0 <= value <= 16 for value in values)
    assert max(values) == 16  # thick strokes fill whole blocks, as in the data
    # The grid is the preprocessing of the pad the browser holds.
    ink = visit.page.evaluate(PAD_INK)
    assert values == reference_preprocess(ink, PAD_SIZE, PAD_SIZE)


def test_clear_empties_the_pad_and_the_answer(visit):
    visit.draw(DRAWN_DIGITS[0])
    visit.wait_for_answer()
    visit.testid("clear").click()
    assert visit.testid("prediction").text_content() == NO_ANSWER
    assert visit.testid("confidence").text_content() == NO_ANSWER
    assert visit.testid("grid").locator(".cell").all_text_contents() == [""] * 64
    assert not any(visit.page.evaluate(PAD_INK))
    assert visit.infer_requests() and "Cleared" in visit.status().text_content()


def test_an_empty_pad_sends_nothing_and_says_so(visit):
    visit.testid("predict").click()
    expect(visit.status()).to_contain_text("The pad is empty")
    visit.draw(DRAWN_DIGITS[4])
    visit.wait_for_answer()
    visit.testid("clear").click()
    visit.testid("predict").click()
    expect(visit.status()).to_contain_text("Nothing was sent")
    assert visit.testid("prediction").text_content() == NO_ANSWER
    assert len(visit.infer_requests()) == 1  # only the drawn digit was sent


def test_test_digits_are_predicted_right_at_once(visit):
    for expected in ("0", "1", "2"):
        visit.show_sample()
        assert visit.wait_for_answer() == expected
        expect(visit.status()).to_contain_text(f"reads a test-set {expected} as")
        assert visit.testid("prediction").text_content() == expected
        assert visit.status().text_content().split(" as ")[1].startswith(expected)
    # Drawing over a test digit starts from a blank pad.
    visit.draw(DRAWN_DIGITS[4])
    expect(visit.status()).to_contain_text("reads your drawing as 4")


def test_controls_are_labelled_and_reachable_by_keyboard(visit):
    page = visit.page
    for name in ("Predict", "Clear", "Show a test digit"):
        assert page.get_by_role("button", name=name).is_visible()
    assert page.get_by_role("img", name="Drawing pad").is_visible()
    focused = []
    for _ in range(3):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.dataset.testid"))
    assert focused == ["predict", "clear", "sample"]
    page.keyboard.press("Enter")  # on "Show a test digit"
    visit.sent += 1
    assert visit.wait_for_answer() == "0"
    # Screen readers hear the answer: the status line and the live result.
    assert "reads a test-set 0 as 0" in visit.status().text_content()
    assert page.locator("[aria-live=polite]").count() >= 1
    assert "row by row" in visit.testid("grid").get_attribute("aria-label")


def random_pads(count: int, seed: int = 0) -> list[tuple[list[int], int, int]]:
    """Pads of random size with random thick blobs, and a few edge cases."""
    rng = random.Random(seed)
    pads = []
    for _ in range(count):
        width, height = rng.randint(20, 90), rng.randint(20, 90)
        ink = [0] * (width * height)
        for _ in range(rng.randint(1, 6)):
            cx, cy = rng.randrange(width), rng.randrange(height)
            radius = rng.randint(1, 8)
            level = rng.choice([90, 127, 128, 200, 255])
            for y in range(max(0, cy - radius), min(height, cy + radius + 1)):
                for x in range(max(0, cx - radius), min(width, cx + radius + 1)):
                    ink[y * width + x] = level
        pads.append((ink, width, height))
    pads.append(([0] * 400, 20, 20))  # empty
    pads.append(([255] * 400, 20, 20))  # full
    pads.append(([0] * 12 + [255] + [0] * 387, 20, 20))  # one dot
    pads.append(([255] * 60 + [0] * 1140, 60, 20))  # a wide bar
    pads.append(([255 if x == 7 else 0 for y in range(50) for x in range(30)], 30, 50))
    return pads


def test_preprocessing_in_the_browser_matches_the_python_reference(visit):
    pads = random_pads(60)
    browser_results = visit.page.evaluate(
        """async (pads) => {
            const { preprocess } = await import('/static/preprocess.js');
            return pads.map(([ink, width, height]) => preprocess(ink, width, height));
        }""",
        pads,
    )
    expected = [reference_preprocess(*pad) for pad in pads]
    assert browser_results == expected
    assert expected[-5] is None and expected[-4] == [16] * 64
    assert sum(1 for result in expected if result is None) == 1 + sum(
        1 for ink, _, _ in pads[:-5] if max(ink) < 128
    )


def test_home_answers_json_liveness_to_api_clients(base_url):
    import urllib.request

    with urllib.request.urlopen(base_url + "/", timeout=5) as response:
        assert response.headers["Content-Type"] == "application/json"
        assert response.read() == b'{"status":"alive"}'
    html = urllib.request.Request(base_url + "/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(html, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert b'data-testid="pad"' in response.read()


def test_the_shipped_test_digits_are_real_test_rows_the_model_gets_right(predictor):
    from training.config import TrainConfig
    from training.samples import SAMPLES_PATH, page_samples, render

    samples = page_samples(TrainConfig())
    assert SAMPLES_PATH.read_text() == render(samples)  # `python -m training.samples`
    assert [sample["label"] for sample in samples] == list(range(10)) * 2
    features = np.asarray([sample["features"] for sample in samples], np.float32)
    predicted = predictor.predict(features).labels.tolist()
    assert predicted == [sample["label"] for sample in samples]


def test_a_digit_drawn_by_touch_on_a_phone_is_recognised(browser, base_url):
    """Touch input reaches the pad as pointer events, and the page does not scroll."""
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(base_url + "/")
    page.get_by_text("Ready:").wait_for()
    touch = context.new_cdp_session(page)
    box = page.get_by_test_id("pad").bounding_box()
    scale = box["width"] / PAD_SIZE
    for stroke in DRAWN_DIGITS[4]:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]
        path = [
            (x0 + (x1 - x0) * step / 8, y0 + (y1 - y0) * step / 8)
            for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False)
            for step in range(8)
        ] + [points[-1]]
        for kind, (x, y) in [("touchStart", path[0])] + [
            ("touchMove", point) for point in path[1:]
        ]:
            touch.send(
                "Input.dispatchTouchEvent",
                {"type": kind, "touchPoints": [{"x": x, "y": y}]},
            )
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(page.locator("main[data-answered='1']")).to_have_count(1)
    assert page.get_by_test_id("prediction").text_content() == "4"
    assert page.evaluate("() => window.scrollY") == 0
    assert errors == []
    context.close()
