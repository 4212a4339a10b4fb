"""`hemowatch demo` in a real browser (Debian's chromium and chromedriver driven by Selenium): the doctor is greeted,
a bundled example slice gets its verdict and heat-map; the simulated patient deteriorates, the alert arrives with
its Acknowledge button (one line, also on a phone), pressing it marks the alert acknowledged, and once the patient
is stable again no alert keeps its button. All through the real bot handlers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hemowatch.demo.cast import DOCTOR
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
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, where failed loads show
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


def clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M UTC")


def chat(demo: str, user: int) -> list[dict]:
    """One person's chat as the page gets it."""
    with urllib.request.urlopen(f"{demo}/api/chat?user={user}", timeout=10) as response:
        return json.load(response)["messages"]


def all_resolved(messages: list[dict]) -> bool:
    """Whether every alert in a chat has resolved and its copies (its first message, its escalations) kept no
    button."""
    copies = [m for m in messages if m["from_bot"] and "Raised at" in m["text"]]
    resolved = [m for m in messages if m["text"].startswith("✅ Resolved:")]
    return bool(copies) and all("✅ Resolved at" in m["text"] and not m["buttons"] for m in copies) and bool(resolved)


def button_lines(driver: webdriver.Chrome, label: str) -> int:
    """How many lines the label of the first inline button called `label` takes."""
    return driver.execute_script(
        "const b = [...document.querySelectorAll('.inline-button')].find(b => b.textContent === arguments[0]);"
        "const text = document.createRange(); text.selectNodeContents(b); return text.getClientRects().length;", label)


def test_a_doctor_sends_an_example_slice_and_acknowledges_the_deterioration_alert(
    demo: str, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    browser.set_window_size(1400, 1000)
    browser.get(demo)
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))  # messages get re-drawn
    assert "demo" in browser.find_element(By.ID, "demo-banner").text.lower()
    doctor = wait.until(lambda d: d.find_element(By.ID, "person-doctor"))
    assert "from the data the model was trained on, so they show how HemoWatch looks, not how well it finds bleeds" in (
        browser.find_element(By.ID, "examples-hint").text)
    start_deterioration = browser.find_element(By.ID, "start-deterioration")
    assert start_deterioration.rect["y"] + start_deterioration.rect["height"] <= browser.execute_script(
        "return window.innerHeight")  # no scrolling to find it
    doctor.click()
    wait.until(lambda d: "selected" in doctor.get_attribute("class"))
    wait.until(lambda d: "Welcome, Dr Morgan. You are signed in as doctor." in bot_texts(d)[0])  # greeted at once

    browser.find_element(By.CSS_SELECTOR, f'.example[data-file="{FLAGGED_EXAMPLE}"]').click()
    wait.until(lambda d: any(text.startswith("Haemorrhage suspected") for text in bot_texts(d)))
    verdict = next(m for m in browser.find_elements(By.CSS_SELECTOR, ".msg.bot") if m.text.startswith("Haemorrhage"))
    sent = next(m for m in chat(demo, DOCTOR.telegram_id) if m["text"].startswith("Haemorrhage"))
    assert verdict.find_element(By.CSS_SELECTOR, ".meta").text == (  # the progress message became the verdict
        f"{clock(sent['date'])} · edited {clock(sent['edited'])}")
    wait.until(picture_shown)
    assert any("Heat-map" in text for text in bot_texts(browser))
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.user img")  # the slice the doctor sent

    start_deterioration.click()
    WebDriverWait(browser, 120).until(lambda d: "Acknowledge" in [b.text for b in d.find_elements(
        By.CSS_SELECTOR, ".inline-button")])  # within a minute at the demo's hold
    browser.set_window_size(420, 900)  # a phone
    assert browser.find_element(By.ID, "chat").rect["width"] >= 400
    assert button_lines(browser, "Acknowledge") == 1
    browser.set_window_size(1400, 1000)
    wait.until(lambda d: press_first(d, "Acknowledge"))
    wait.until(lambda d: any("Acknowledged by Dr Morgan" in text for text in bot_texts(d)))
    wait.until(lambda d: "on it" in d.find_element(By.ID, "toast").text)
    acknowledged = next(m for m in browser.find_elements(By.CSS_SELECTOR, ".msg.bot") if "Acknowledged by" in m.text)
    assert not acknowledged.find_elements(By.CSS_SELECTOR, ".inline-button")
    assert "deteriorating" in browser.find_element(By.ID, "scenario").text

    browser.find_element(By.ID, "back-to-stable").click()  # every alert resolves: no copy keeps its button
    WebDriverWait(browser, 90).until(lambda d: all_resolved(chat(demo, DOCTOR.telegram_id)))
    wait.until(lambda d: "Acknowledge" not in [b.text for b in d.find_elements(By.CSS_SELECTOR, ".inline-button")])
    assert all(re.fullmatch(r"\d\d:\d\d UTC( · edited \d\d:\d\d UTC)?", meta.text)
               for meta in browser.find_elements(By.CSS_SELECTOR, ".meta"))
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]  # the icon too loaded

    browser.save_screenshot(str(tmp_path / "demo.png"))
