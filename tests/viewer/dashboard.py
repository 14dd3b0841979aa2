"""A real ``tensorboard`` on loopback and a headless Chromium at 1600×1000, for the dashboard's browser tests and
for the docs' screenshots (``python tests/viewer/dashboard.py LOGDIR RUN [OUT]``, by default into `DOCS_IMAGES`:
see `docs_screenshots`)."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lightning_gen.viewer.tensorboard.plugin import PLUGIN_NAME

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
WIDTH, HEIGHT = 1600, 1000
WAIT = 30  # seconds for any one thing to appear
#: Where the docs site keeps its pictures (README.md shows them from there too).
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "pages" / "images"
# What works headless on a machine without a GPU or a network, and keeps the browser from calling out.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir: Path, log: Path) -> Iterator[str]:
    """``tensorboard --logdir`` on 127.0.0.1 only, as a user starts it (no extra flag); its URL; stopped after."""
    port = _free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/data/plugins_listing", timeout=5) as response:
                    if json.load(response).get(PLUGIN_NAME, {}).get("enabled"):
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tensorboard did not list the {PLUGIN_NAME} tab as enabled:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """Headless Chromium at 1600×1000 with a fresh profile, driven by the installed chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver given explicitly: Selenium Manager would otherwise look for one on the network.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_dashboard(browser, url: str, fragment: str = "", ready: str = "main .sample"):
    """TensorBoard's page on the Samples tab (``fragment``: more of the URL's hash); the driver is left inside
    the dashboard's iframe once the view is drawn (an element matches ``ready``). Returns a `WebDriverWait`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get("about:blank")  # a fresh page: the same URL again would only be a same-document navigation
    browser.get(f"{url}/#{PLUGIN_NAME}{fragment}")
    wait = WebDriverWait(browser, WAIT)
    browser.switch_to.frame(wait.until(lambda b: b.find_element(By.TAG_NAME, "iframe")))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ready))
    return wait


def screenshot(browser, path: Path) -> Path:
    """The whole TensorBoard page as the user sees it; the driver goes back into the dashboard's iframe."""
    from selenium.webdriver.common.by import By

    time.sleep(0.3)  # let the last layout settle
    browser.switch_to.default_content()
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(path))
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    return path


def docs_screenshots(logdir: Path, out: Path, *, run: str) -> None:
    """The docs' pictures from a real run of the example (``run`` under ``logdir``): the grid at its last step,
    two late steps compared, the greedy completions diffed, and (where it has a TaskMonitor's records) its
    evaluations: each task's curves, and what flipped between its last two evaluations."""
    from selenium.webdriver.common.by import By

    steps = sorted({json.loads(line)["step"] for line in (logdir / run / "samples.jsonl").open()})
    with tensorboard(logdir, out / "tensorboard.log") as url, chromium() as browser:
        open_dashboard(browser, url, f"&p.{PLUGIN_NAME}.run={run}")
        screenshot(browser, out / "dashboard-grid.png")
        fragment = f"&p.{PLUGIN_NAME}.run={run}&p.{PLUGIN_NAME}.view=steps"
        fragment += f"&p.{PLUGIN_NAME}.old={steps[-3]}&p.{PLUGIN_NAME}.step={steps[-1]}"
        open_dashboard(browser, url, fragment)
        assert browser.find_elements(By.CSS_SELECTOR, "table.compare .ins"), "the compare view has no diff"
        screenshot(browser, out / "dashboard-compare.png")
        written = ["dashboard-grid.png", "dashboard-compare.png"]
        if (logdir / run / "evaluations.jsonl").is_file():
            open_dashboard(browser, url, f"&p.{PLUGIN_NAME}.run={run}&p.{PLUGIN_NAME}.view=evaluations",
                           ready=".task-row .example")
            screenshot(browser, out / "dashboard-evaluations.png")
            written.append("dashboard-evaluations.png")
    (out / "tensorboard.log").unlink()
    print(f"wrote {', '.join(written)} to {out} from {logdir / run}")


if __name__ == "__main__":  # python tests/viewer/dashboard.py LOGDIR RUN [OUT]
    docs_screenshots(Path(sys.argv[1]), Path(sys.argv[3]) if len(sys.argv) > 3 else DOCS_IMAGES, run=sys.argv[2])
