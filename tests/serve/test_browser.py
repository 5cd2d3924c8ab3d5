"""The web page in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from pinclip.serve import PinService, create_app


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


@pytest.mark.slow
def test_search_page_shows_results_and_related(live_server, tmp_path):
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=args)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(live_server + "/")
        page.fill("#q", "red circle")
        page.press("#q", "Enter")
        page.wait_for_selector("#results .pin img")
        images = page.locator("#results .pin img")
        assert images.count() == 24
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.locator("#results .score").first.inner_text().startswith("score ")
        shot = os.environ.get("PINCLIP_SCREENSHOT", str(tmp_path / "search.png"))
        page.screenshot(path=shot, full_page=False)
        page.locator("#results .pin").first.click()
        page.wait_for_selector("#related .pin img")
        assert page.locator("#related .pin").count() == 12
        browser.close()
    assert os.path.getsize(shot) > 5000
