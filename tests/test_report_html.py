"""``report.html`` in a real headless browser (Debian's Chromium through chromedriver and Selenium).

The page must load without a console error, show the records' numbers in its tables, embed its
plots (every image decoded), reach for nothing on the network, and a screenshot is written. The test
skips where no Chromium or chromedriver is installed (``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from suite.report import write_reports

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_page_loads_holds_the_numbers_and_renders(tmp_path, browser):
    from selenium.webdriver.common.by import By

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "records", run / "records")
    shutil.copytree(FIXTURES / "predictions", run / "predictions")
    write_reports(run, reference="bipeft")
    page = (run / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained

    browser.get((run / "report.html").as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    cells = [td.text for td in browser.find_elements(By.TAG_NAME, "td")]
    lora = [json.loads((run / "records" / f"lora--manual--glue_mrpc--seed{s}--bnone.json").read_text())
            for s in (0, 1, 2)]
    mean = sum(r["metrics"]["test"]["f1"] for r in lora) / 3
    assert any(c.startswith(f"{mean:.2f} [") for c in cells), "the LoRA MRPC cell is not in the page"
    assert "win" in cells and "loss" in cells  # the comparison table
    assert page.index('id="comparison"') < page.index("Paired differences") < page.index('id="plots"')
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 5  # paired differences, placements (beside their tables), ranks, pareto, budget
    assert page.index('id="architectures"') < page.index("Placements: ") < page.index('id="plots"')
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
               for img in images)
    heat_maps = browser.find_elements(By.CSS_SELECTOR, "table.heat")
    records = [json.loads(p.read_text()) for p in (run / "records").glob("*.json")]
    assert len(heat_maps) == sum(1 for r in records if r["status"] == "ok" and r["architecture"]["placements"])
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
