"""The dashboard in a real headless Chromium (Debian's ``chromium`` + ``chromedriver``, via Selenium).

A real worker is fed a seeded market with a pump; the page is loaded from the worker and what
it drew is compared with what the worker's JSON API says: one table row per symbol, the price
line with as many points as the series has, the Bollinger band, the score line and threshold,
one marker per alert of the symbol, and the alert list. A screenshot is saved under the test's
tmp dir and copied to ``artifacts/dashboard.png``.
"""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ._support import ROOT, Names, Workers, produce_keyed
from .test_worker import H, market

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are required (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_dashboard_renders_live_worker_data(browser: Any, broker: Any, names: Names, workers: Workers,
                                            tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = market(1.25, [(0, 1 * H)])
    pumped = data.labels[0].symbol
    names.create_topics(broker)
    produce_keyed(broker, names.ticks, data.records)
    w = workers.start()
    w.wait_ready()
    assert w.wait_symbol_ticks(data.counts()) == data.counts()

    browser.get(f"{w.base_url}/dashboard?symbol={urllib.parse.quote(pumped, safe='')}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    _, series = w.get("/dashboard/series/" + urllib.parse.quote(pumped, safe=""))
    _, alerts = w.get("/alerts?limit=50")
    _, listing = w.get("/symbols")
    assert series["alerts"], "the pump raised no alert: nothing to mark on the chart"

    # Symbol table: one row per symbol, the worker's prices.
    rows = browser.find_elements(By.CSS_SELECTOR, "#symbols tbody tr")
    shown = {r.get_attribute("data-symbol"): r.find_elements(By.TAG_NAME, "td")[1].text for r in rows}
    assert set(shown) == set(data.counts())
    assert [r.get_attribute("data-symbol") for r in rows if "sel" in r.get_attribute("class")] == [pumped]
    assert float(shown[pumped]) == pytest.approx(next(s["last_price"] for s in listing["symbols"]
                                                      if s["symbol"] == pumped), rel=1e-5)

    # Price chart: as many points as distinct bars in the series, the band, the alert markers.
    price = browser.find_element(By.ID, "price-chart")
    bars = {p[0] for p in series["points"]}
    assert int(price.get_attribute("data-points")) == len(bars) > 50
    path = price.find_element(By.CSS_SELECTOR, "path.price").get_attribute("d")
    assert path.count("L") == len(bars) - 1
    assert int(price.get_attribute("data-banded")) >= 2
    assert price.find_elements(By.CSS_SELECTOR, "path.band-fill") and price.find_elements(By.CSS_SELECTOR,
                                                                                          "path.band-mid")
    t0, t1 = min(bars), max(bars)
    in_range = [a for a in series["alerts"] if t0 <= a["event_time"] <= t1 + 10_000]
    markers = price.find_elements(By.CSS_SELECTOR, "circle.alert-marker")
    assert len(markers) == len(in_range) >= 1
    # Score chart: the ensemble score line and the alert threshold.
    score = browser.find_element(By.ID, "score-chart")
    assert score.find_element(By.CSS_SELECTOR, "path.score").get_attribute("d").count("L") == len(bars) - 1
    assert score.find_elements(By.CSS_SELECTOR, "line.threshold")

    # Alert list: the worker's recent alerts, the pumped symbol's among them.
    items = browser.find_elements(By.CSS_SELECTOR, "#alerts li.alert-item")
    assert {i.get_attribute("data-alert-id") for i in items} == {a["alert_id"] for a in alerts["alerts"]}
    assert any(pumped in i.text for i in items)

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    (ROOT / "artifacts").mkdir(exist_ok=True)
    shutil.copy(shot, ROOT / "artifacts" / "dashboard.png")
