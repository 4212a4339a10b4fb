"""`hemowatch demo` in a real browser (Debian's chromium and chromedriver driven by Selenium): as the doctor, a
bundled example slice gets its verdict and heat-map; the simulated patient deteriorates, the alert arrives with
its Acknowledge button, and pressing it marks the alert acknowledged. All through the real bot handlers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.broker import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
)
SETTINGS_PREFIXES = ("TELEGRAM_", "MQTT_", "HEMOWATCH_", "ADMIN_", "WEBHOOK_", "EMBEDDED_BROKER_")
FLAGGED_EXAMPLE = "patient071-slice13.jpg"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """`hemowatch demo` on a free port, from an empty folder and without any HemoWatch setting in its environment."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(SETTINGS_PREFIXES)}
    log = (tmp_path / "demo.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "hemowatch.cli", "demo", "--port", str(port)],
                               cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the demo ended at start:\n{(tmp_path / 'demo.log').read_text()}"
            try:  # the page answers at once; the bedside device starts once the service runs
                with urllib.request.urlopen(f"{url}/api/setup", timeout=2) as response:
                    if json.load(response)["scenario"] == "stable":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the demo did not start within 60 s"
            time.sleep(0.5)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
        log.close()
    assert status == 0, (tmp_path / "demo.log").read_text()
    assert not list(tmp_path.glob("*.db*")) and not (tmp_path / ".env").exists()  # its database was a temporary one


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def bot_texts(driver: webdriver.Chrome) -> list[str]:
    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, ".msg.bot")]


def picture_shown(driver: webdriver.Chrome) -> bool:
    return driver.execute_script(
        "return [...document.querySelectorAll('.msg.bot img')].some(i => i.complete && i.naturalWidth > 100)")


def press_first(driver: webdriver.Chrome, label: str) -> bool:
    """Click the first inline button called `label`; False while there is none (or it was just re-drawn)."""
    try:
        buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, ".inline-button") if b.text == label]
        if not buttons:
            return False
        buttons[0].click()
        return True
    except StaleElementReferenceException:
        return False


def test_a_doctor_sends_an_example_slice_and_acknowledges_the_deterioration_alert(
    demo: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    browser.get(demo)
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))  # messages get re-drawn
    assert "demo" in browser.find_element(By.ID, "demo-banner").text.lower()
    doctor = wait.until(lambda d: d.find_element(By.ID, "person-doctor"))
    assert "from the data the model was trained on, so they show how HemoWatch looks, not how well it finds bleeds" in (
        browser.find_element(By.ID, "examples-hint").text)
    doctor.click()
    wait.until(lambda d: "selected" in doctor.get_attribute("class"))

    browser.find_element(By.CSS_SELECTOR, f'.example[data-file="{FLAGGED_EXAMPLE}"]').click()
    wait.until(lambda d: any(text.startswith("Haemorrhage suspected") for text in bot_texts(d)))
    verdict = next(m for m in browser.find_elements(By.CSS_SELECTOR, ".msg.bot") if m.text.startswith("Haemorrhage"))
    assert "edited" in verdict.find_element(By.CSS_SELECTOR, ".meta").text  # the progress message became the verdict
    wait.until(picture_shown)
    assert any("Heat-map" in text for text in bot_texts(browser))
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.user img")  # the slice the doctor sent

    browser.find_element(By.ID, "start-deterioration").click()
    WebDriverWait(browser, 120).until(lambda d: press_first(d, "Acknowledge"))  # within a minute at the demo's hold
    wait.until(lambda d: any("Acknowledged by Dr Morgan" in text for text in bot_texts(d)))
    wait.until(lambda d: "on it" in d.find_element(By.ID, "toast").text)
    acknowledged = next(m for m in browser.find_elements(By.CSS_SELECTOR, ".msg.bot") if "Acknowledged by" in m.text)
    assert not acknowledged.find_elements(By.CSS_SELECTOR, ".inline-button")
    assert "deteriorating" in browser.find_element(By.ID, "scenario").text

    browser.save_screenshot(str(tmp_path / "demo.png"))
