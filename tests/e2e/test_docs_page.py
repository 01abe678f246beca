"""Issue #15: the documentation page in headless Chromium (Debian's `chromium`, driven by
Playwright's Python package; no browser download): the catalog loaded from /v1/models with every
model and its prices, search, provider filter, price sort, and no sideways scroll at 390 px.
Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests import services

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ROWS = "rows => rows.map(r => [r.dataset.model, ...Array.from(r.cells).map(c => c.innerText.trim())])"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        services.unavailable("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def _open(browser: Any, url: str, width: int) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(url + "/")
    page.wait_for_selector("#catalog[data-loaded='true']", timeout=15_000)
    return page


def _rows(page: Any) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in page.eval_on_selector_all("#catalog tbody tr", ROWS)}


def _price(value: str | None) -> str:
    return "—" if value is None else f"${value}"


def test_catalog_search_filter_and_sort(relay, browser) -> None:
    models = httpx.get(relay.url + "/v1/models").json()["data"]
    page = _open(browser, relay.url, 1280)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs-desktop.png"), full_page=True)

    rows = _rows(page)
    assert list(rows) == [m["id"] for m in models]  # every model, in catalog order
    for m in models:
        cells, prices = rows[m["id"]], m["pricing_per_1m"]
        assert cells[0].splitlines()[0] == m["id"] and cells[1] == m["owned_by"]
        assert cells[3] == _price(prices["input"]) and cells[4] == _price(prices["cached_input"])
        assert cells[5] == ("—" if m["mode"] == "embedding" else _price(prices["output"]))
        for alias in m["aliases"]:
            assert alias in cells[0]
    assert f"{relay.url}/v1/chat/completions" in page.inner_text("body")  # curl with the relay's host

    page.fill("#search", "haiku")
    shown = _rows(page)
    assert shown and set(shown) == {m["id"] for m in models
                                    if "haiku" in " ".join([m["id"], *m["aliases"]]).lower()}
    aliased = next(m for m in models if m["aliases"])
    page.fill("#search", aliased["aliases"][0])
    assert aliased["id"] in _rows(page)

    page.fill("#search", "")
    page.select_option("#provider", "anthropic")
    shown = _rows(page)
    assert set(shown) == {m["id"] for m in models if m["owned_by"] == "anthropic"}
    assert all(cells[1] == "anthropic" for cells in shown.values())
    assert page.inner_text("#count").startswith(f"{len(shown)} of {len(models)}")

    page.select_option("#provider", "")
    page.select_option("#mode", "chat")
    page.select_option("#sort", "input:desc")
    inputs = [float(cells[3].lstrip("$")) for cells in _rows(page).values()]
    assert inputs and inputs == sorted(inputs, reverse=True)
    page.close()


def test_readable_at_390_px(relay, browser) -> None:
    page = _open(browser, relay.url, 390)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs-390.png"), full_page=True)
    scroll, width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll <= width, f"the page scrolls sideways: {scroll} px of content in {width} px"
    page.close()
