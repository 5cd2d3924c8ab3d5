"""The web page in a real browser: Debian's chromium driven by Playwright.

One walk through the product: pins on first load, a search whose query is in the URL (a
shareable link; the back button works), a pin's related pins and boards, and adding a pin
that is embedded on arrival and shown where it lands. Each view is screenshotted and the
screenshot is checked: every element the view must show is inside the shot and not blank.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image

from pinclip.serve import PinService, create_app

from .conftest import png_bytes


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: `make browser-deps` should have installed it")
        pytest.skip("chromium is not installed: run `make browser-deps` (apt-get install chromium)")
    return path


@pytest.fixture
def live_server(index_dir, model_dir, tmp_path):
    import uvicorn

    service = PinService.open(index_dir, model_dir, store_dir=tmp_path / "store")
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _shot(page, folder: Path, name: str, must_show: list[str]) -> Path:
    """Screenshot the viewport; each selector's element must be in it and not blank there."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    shot = Image.open(path).convert("RGB")
    for selector in must_show:
        box = page.locator(selector).first.bounding_box()
        assert box is not None, f"{name}: {selector} is not displayed"
        left, top = max(box["x"], 0), max(box["y"], 0)
        right, bottom = (
            min(box["x"] + box["width"], shot.width),
            min(box["y"] + box["height"], shot.height),
        )
        assert right > left and bottom > top, f"{name}: {selector} is outside the screenshot"
        colours = shot.crop((int(left), int(top), int(right), int(bottom))).getcolors(1 << 16)
        assert colours is None or len(colours) > 1, f"{name}: {selector} is blank in the shot"
    return path


def _all_images_loaded(page, grid: str) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{grid} img')].every(i => i.complete && i.naturalWidth > 0)"
    )


@pytest.mark.slow
def test_the_page_shows_the_product(live_server, tmp_path):
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    folder = Path(os.environ.get("PINCLIP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    upload = tmp_path / "new-pin.png"
    upload.write_bytes(png_bytes(48, color=(20, 180, 220), seed=5))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})

        # 1. first load: pins already there, and the add-a-pin form
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin img")
        assert page.locator("#pins .pin").count() == 40
        _all_images_loaded(page, "#pins")
        assert "96" in page.inner_text("#browse-title")
        _shot(page, folder, "1-browse", ["#pins .pin img", "#q", "#add", "#browse-title"])

        # 2. a search: the query goes into the URL (shareable) and the results show
        page.fill("#q", "red circle")
        page.press("#q", "Enter")
        page.wait_for_selector("#results .pin .score")
        assert parse_qs(urlparse(page.url).query)["q"] == ["red circle"]
        assert page.locator("#results .pin").count() == 24
        _all_images_loaded(page, "#results")
        _shot(page, folder, "2-search", ["#results-title", "#results .pin img", "#results .score"])
        search_url = page.url

        # 3. a click on a pin: its related pins and the boards it would be saved to
        first = page.locator("#results .pin").first
        clicked = first.get_attribute("data-pin-id")
        first.click()
        page.wait_for_selector("#related .pin img")
        page.wait_for_selector("#boards .board")
        assert parse_qs(urlparse(page.url).query)["pin"] == [clicked]
        assert page.locator("#related .pin").count() == 12
        assert clicked not in page.locator("#related .pin").evaluate_all(
            "els => els.map(e => e.dataset.pinId)"
        )
        _all_images_loaded(page, "#pin-view")
        _shot(
            page,
            folder,
            "3-pin",
            ["#detail-image", "#detail-title", "#boards .board", "#related .pin img"],
        )

        # 4. the back button returns to the search; a shared link opens it directly
        page.go_back()
        page.wait_for_selector("#search-view:not([hidden]) #results .pin")
        assert page.url == search_url and page.input_value("#q") == "red circle"
        other = browser.new_page(viewport={"width": 1100, "height": 900})
        other.goto(search_url)
        other.wait_for_selector("#results .pin")
        assert other.inner_text("#results-title") == "Results for “red circle”"
        other.close()

        # 5. add a pin: embedded on arrival, shown where it lands (cold start)
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin")
        page.set_input_files("#add-image", str(upload))
        page.fill("#add-title", "a turquoise newcomer")
        page.click("#add-submit")
        page.wait_for_selector("#notice:not([hidden])")
        page.wait_for_selector("#related .pin img")
        page.wait_for_selector("#boards .board")
        pin_id = parse_qs(urlparse(page.url).query)["pin"][0]
        assert page.inner_text("#detail-title") == "a turquoise newcomer"
        assert "a turquoise newcomer" in page.inner_text("#notice")
        _all_images_loaded(page, "#pin-view")
        shot = _shot(
            page,
            folder,
            "4-added",
            ["#notice", "#detail-image", "#boards .board", "#related .pin img"],
        )
        # the new pin is in the index: the browse view now counts it
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin")
        assert "97" in page.inner_text("#browse-title")
        assert pin_id.startswith("u-")
        browser.close()
    assert shot.stat().st_size > 5000
