"""The web page in a real browser: Debian's chromium driven by Playwright.

One walk through the product: pins on first load, a search whose query is in the URL (a
shareable link; the back button works) and whose results page, cards that are real links, a
pin's own boards, description, link, related pins and suggested boards, a board's page, a
clean not-found, images of any aspect ratio in a packed grid, adding a pin that is embedded
on arrival and shown where it lands, and the API docs, all with no network beyond the server. Each view is screenshotted and the
screenshot is checked: every element the view must show is inside the shot and not blank.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

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


def _png(width: int, height: int, color: tuple[int, int, int], seed: int) -> bytes:
    import io

    import numpy as np

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(color, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _no_overlap_and_packed(page, grid: str) -> None:
    """Cards of a grid never overlap, and each card sits right under the one above it in its
    column (a masonry layout: no row-height gaps under short cards)."""
    boxes = page.locator(f"{grid} .pin").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return [r.left, r.top, r.right, r.bottom]; })"
    )
    columns: dict[int, list] = {}
    for box in boxes:
        columns.setdefault(round(box[0]), []).append(box)
    for column in columns.values():
        column.sort(key=lambda b: b[1])
        for above, below in itertools.pairwise(column):
            assert below[1] >= above[3] - 1, f"cards overlap in {grid}: {above} {below}"
            assert below[1] - above[3] < 24, f"a gap under a card in {grid}: {above} {below}"


@pytest.mark.slow
def test_the_page_shows_the_product(live_server, tmp_path):
    executable = _chromium()
    import httpx
    from playwright.sync_api import sync_playwright

    folder = Path(os.environ.get("PINCLIP_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    upload = tmp_path / "new-pin.png"
    upload.write_bytes(png_bytes(48, color=(20, 180, 220), seed=5))
    tall = tmp_path / "tall.png"
    tall.write_bytes(_png(40, 120, (240, 120, 20), seed=8))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        # Air-gapped: any request that leaves this server fails (the docs' assets included).
        outside: list[str] = []

        def offline(route):
            if route.request.url.startswith(live_server):
                return route.continue_()
            outside.append(route.request.url)
            return route.abort()

        context.route("**/*", offline)
        page = context.new_page()

        # 1. first load: pins already there, and the add-a-pin form
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin img")
        assert page.locator("#pins .pin").count() == 40
        _all_images_loaded(page, "#pins")
        assert "96" in page.inner_text("#browse-title")
        _shot(page, folder, "1-browse", ["#pins .pin img", "#q", "#add", "#browse-title"])
        _no_overlap_and_packed(page, "#pins")

        # 2. a search: the query goes into the URL (shareable), results page by page
        page.fill("#q", "red circle")
        page.press("#q", "Enter")
        page.wait_for_selector("#results .pin .score")
        assert parse_qs(urlparse(page.url).query)["q"] == ["red circle"]
        assert page.locator("#results .pin").count() == 24
        first_page = page.locator("#results .pin").evaluate_all(
            "els => els.map(e => e.dataset.pinId)"
        )
        page.click("#more-results")
        page.wait_for_function("document.querySelectorAll('#results .pin').length === 48")
        both = page.locator("#results .pin").evaluate_all("els => els.map(e => e.dataset.pinId)")
        assert both[:24] == first_page and len(set(both)) == 48  # the next 24, no repeats
        page.evaluate("window.scrollTo(0, 0)")
        _all_images_loaded(page, "#results")
        _shot(page, folder, "2-search", ["#results-title", "#results .pin img", "#results .score"])
        search_url = page.url

        # 3. cards are real links: Tab reaches one, Enter opens the pin (here); the link
        # opens in a new tab as well (its href is the pin's own page)
        first = page.locator("#results .pin").first
        clicked = first.get_attribute("data-pin-id")
        assert first.evaluate("e => e.tagName") == "A"
        assert parse_qs(urlparse(first.get_attribute("href")).query)["pin"] == [clicked]
        tab = context.new_page()
        tab.goto(urljoin(page.url, first.get_attribute("href")))
        tab.wait_for_selector("#detail-title")
        tab.close()
        first.focus()
        assert page.evaluate("document.activeElement.dataset.pinId") == clicked
        page.keyboard.press("Enter")
        page.wait_for_selector("#related .pin img")
        page.wait_for_selector("#boards .board")
        assert parse_qs(urlparse(page.url).query)["pin"] == [clicked]
        assert page.locator("#related .pin").count() == 24
        assert clicked not in page.locator("#related .pin").evaluate_all(
            "els => els.map(e => e.dataset.pinId)"
        )
        # the pin's own boards, description and link, from the catalog
        pin = httpx.get(f"{live_server}/v1/pins/{clicked}").json()
        assert pin["boards"] and pin["description"] and pin["link"].startswith("https://")
        saved = page.locator("#saved-to a").evaluate_all("els => els.map(e => e.dataset.boardId)")
        assert saved == [b["board_id"] for b in pin["boards"]]
        assert page.inner_text("#detail-description") == pin["description"]
        assert page.get_attribute("#detail-link", "href") == pin["link"]
        assert page.get_attribute("#detail-link", "target") == "_blank"
        _all_images_loaded(page, "#pin-view")
        _shot(
            page,
            folder,
            "3-pin",
            [
                "#detail-image",
                "#detail-title",
                "#saved-to a",
                "#boards .board a",
                "#related .pin img",
            ],
        )

        # 4. a board name is a link: the board's page, its title and its pins, paged
        board = pin["boards"][0]
        page.locator(f"#saved-to a[data-board-id='{board['board_id']}']").click()
        page.wait_for_selector("#board-view:not([hidden]) #board-pins .pin img")
        assert parse_qs(urlparse(page.url).query)["board"] == [board["board_id"]]
        assert page.inner_text("#board-title") == board["title"]
        on_board = httpx.get(f"{live_server}/v1/boards/{board['board_id']}").json()
        assert page.locator("#board-pins .pin").evaluate_all(
            "els => els.map(e => e.dataset.pinId)"
        ) == [p["pin_id"] for p in on_board["pins"]]
        assert clicked in [p["pin_id"] for p in on_board["pins"]]
        assert str(on_board["total"]) in page.inner_text("#board-count")
        _all_images_loaded(page, "#board-pins")
        _shot(page, folder, "4-board", ["#board-title", "#board-count", "#board-pins .pin img"])
        suggested = page  # a suggested board (the pin page's bars) opens its page too
        suggested.go_back()
        suggested.wait_for_selector("#boards .board a")
        target = suggested.locator("#boards .board a").first.get_attribute("data-board-id")
        suggested.locator("#boards .board a").first.click()
        suggested.wait_for_function(
            f"new URLSearchParams(location.search).get('board') === {target!r}"
        )
        suggested.wait_for_selector("#board-view:not([hidden]) #board-pins .pin")

        # 5. the back button returns to the search; a shared link opens it directly
        page.goto(search_url)
        page.wait_for_selector("#search-view:not([hidden]) #results .pin")
        assert page.input_value("#q") == "red circle"
        other = context.new_page()
        other.goto(search_url)
        other.wait_for_selector("#results .pin")
        assert other.inner_text("#results-title") == "Results for “red circle”"
        other.close()

        # 6. a link to a pin or board that does not exist: a clean not-found view
        for kind in ("pin", "board"):
            page.goto(f"{live_server}/?{kind}=no-such-{kind}")
            page.wait_for_selector("#not-found:not([hidden])")
            assert f"no-such-{kind}" in page.inner_text("#not-found-title")
            assert page.inner_text("#status") == ""  # not an error line
            for view in ("#pin-view", "#board-view", "#search-view", "#browse-view"):
                assert page.locator(view).is_hidden()
        _shot(page, folder, "5-not-found", ["#not-found-title", "#not-found-home"])

        # 7. images of any aspect ratio: a tall pin is shown whole, at its own ratio, and
        # the grid packs the cards under it; browsing pages on to the added pins (last)
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin")
        page.set_input_files("#add-image", str(tall))
        page.fill("#add-title", "a tall orange pin")
        page.click("#add-submit")
        page.wait_for_selector("#notice:not([hidden])")
        tall_id = parse_qs(urlparse(page.url).query)["pin"][0]
        page.click("#home-link")
        page.wait_for_selector("#pins .pin")
        for shown in (80, 97):
            page.wait_for_selector("#more:not([disabled])")
            page.click("#more")
            page.wait_for_function(f"document.querySelectorAll('#pins .pin').length === {shown}")
        assert page.locator("#more").is_hidden()
        card = page.locator(f"#pins .pin[data-pin-id='{tall_id}']")
        card.scroll_into_view_if_needed()
        _all_images_loaded(page, "#pins")
        ratio = card.locator("img").evaluate(
            "i => [i.clientHeight / i.clientWidth, i.naturalHeight / i.naturalWidth]"
        )
        assert abs(ratio[0] - ratio[1]) < 0.05 and ratio[1] == 3.0, ratio
        _no_overlap_and_packed(page, "#pins")
        _shot(page, folder, "6-aspect", [f"#pins .pin[data-pin-id='{tall_id}'] img"])

        # 8. add a pin: embedded on arrival, shown where it lands (cold start)
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin")
        page.set_input_files("#add-image", str(upload))
        page.fill("#add-title", "a turquoise newcomer")
        page.fill("#add-description", "bright and new")
        page.click("#add-submit")
        page.wait_for_selector("#notice:not([hidden])")
        page.wait_for_selector("#related .pin img")
        page.wait_for_selector("#boards .board")
        pin_id = parse_qs(urlparse(page.url).query)["pin"][0]
        assert page.inner_text("#detail-title") == "a turquoise newcomer"
        assert page.inner_text("#detail-description") == "bright and new"
        assert "a turquoise newcomer" in page.inner_text("#notice")
        _all_images_loaded(page, "#pin-view")
        shot = _shot(
            page,
            folder,
            "7-added",
            ["#notice", "#detail-image", "#boards .board", "#related .pin img"],
        )
        # the new pin is in the index: the browse view now counts it
        page.goto(live_server + "/")
        page.wait_for_selector("#pins .pin")
        assert "98" in page.inner_text("#browse-title")
        assert pin_id.startswith("u-")

        # 9. the API docs render with no network beyond this server
        page.goto(live_server + "/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert page.locator(".swagger-ui .opblock").count() >= 10
        _shot(page, folder, "8-docs", [".swagger-ui .opblock"])
        browser.close()
    assert outside == [], f"the page or the docs reached outside the server: {outside}"
    assert shot.stat().st_size > 5000
