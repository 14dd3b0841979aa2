"""Samples for TensorBoard in a real browser: a real ``tensorboard`` on a tiny run's logs, headless Chromium.

What a user sees, read from the page: one prompt's first and last step on screen at once, hostile text shown as
text, a second run to pick and compare, two steps side by side with the changed words marked. Skipped where
Chromium, its driver or Selenium is missing (CI installs them: ``.ci/run``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from lightning_gen.text.records import RECORDS_FILE, sample_record
from lightning_gen.text.samples import Sample
from lightning_gen.viewer.tensorboard.plugin import PLUGIN_NAME

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless browser: install Debian's chromium and chromium-driver"),
    pytest.mark.timeout(120),
]

HOSTILE = '<script>alert(1)</script> <b>x</b> &amp; **x** <img src=x onerror="window.__pwned=1">'
WAIT = 30  # seconds for any one thing to appear


def shown(text: str) -> str:
    """What the dashboard shows for ``text``: ⏎ before each newline, ⇥ before each tab, · for trailing spaces."""
    lines = []
    for line in text.split("\n"):
        body = line.rstrip(" ")
        lines.append(body.replace("\t", "⇥\t") + "·" * (len(line) - len(body)))
    return "⏎\n".join(lines)


def _tiny_run(root) -> list[dict]:
    """A real training with the monitor (TinyLM, a char tokenizer): its records file under ``root/tb/version_0``."""
    from tiny import TinyLM, trainer

    from lightning_gen import GenerationMonitor

    monitor = GenerationMonitor(["ab ", "hello"], every_n_train_steps=2, generation={"max_new_tokens": 8,
                                                                                      "do_sample": True})
    trainer(root, [monitor], max_steps=4).fit(TinyLM())
    [path] = root.rglob(RECORDS_FILE)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    records = _tiny_run(root)
    hostile = root / "hostile"
    hostile.mkdir()
    with (hostile / RECORDS_FILE).open("w") as out:
        for step in (0, 4):
            sample = Sample(HOSTILE, f"{HOSTILE} {step}", [1], [2], metrics={"mean_logprob": -1.0})
            out.write(json.dumps(sample_record(step, 0, sample, tag="samples")) + "\n")
            # Prompt 1 ends with an EOS token whose text the tokenizer writes out.
            ended = Sample("Say", "ok done</s>", [1], [5, 6, 1], token_logprobs=[-0.1, -3.0, -0.5],
                           tokens=["ok", " done", "</s>"], eos=True)
            out.write(json.dumps(sample_record(step, 1, ended, tag="samples")) + "\n")
            # Prompt 2: whitespace and a control character at step 0, nothing at all at step 4.
            spaced = Sample("Ws", "a\tb\x07c  \n  " if step == 0 else "", [1], [2])
            out.write(json.dumps(sample_record(step, 2, spaced, tag="samples")) + "\n")
    return root, records


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(logdir, tmp_path_factory):
    """``tensorboard --logdir`` on loopback, as a user starts it (no extra flag); its URL; stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("tb") / "tensorboard.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir[0]), "--host", "127.0.0.1",
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
                pytest.fail(f"tensorboard did not list the {PLUGIN_NAME} tab as enabled:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    # The driver given explicitly: Selenium Manager would otherwise look for one on the network.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_dashboard(browser, url):
    """TensorBoard's page on the Samples tab; the driver is left inside the dashboard's iframe."""
    browser.get("about:blank")  # a fresh page: the same URL again would only be a same-document navigation
    browser.get(f"{url}/#{PLUGIN_NAME}")
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda b: any(tab.text.strip().lower() == "samples"
                             for tab in b.find_elements(By.CSS_SELECTOR, ".plugin-name, .mat-mdc-tab, [role=tab]")))
    browser.switch_to.frame(wait.until(lambda b: b.find_element(By.TAG_NAME, "iframe")))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".sample"))
    return wait


def pick_run(browser, wait, run):
    Select(browser.find_element(By.ID, "run")).select_by_visible_text(run)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, f'.sample[data-run="{run}"]'))


def click_view(browser, wait, view):
    browser.find_element(By.CSS_SELECTOR, f'button[data-view="{view}"]').click()
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, f'button[data-view="{view}"]').get_attribute("class")
               == "active")


def completion_of(card) -> str:
    return card.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent")


def on_screen(browser, element) -> bool:
    return browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 "
        "&& r.right <= window.innerWidth;", element)


def test_one_prompts_first_and_last_step_are_on_screen_together(browser, tensorboard, logdir):
    _, records = logdir
    steps = sorted({r["step"] for r in records})
    assert steps[0] == 0 and len(steps) >= 3
    wait = open_dashboard(browser, tensorboard)
    pick_run(browser, wait, "tb/version_0")
    click_view(browser, wait, "history")
    Select(browser.find_element(By.ID, "prompt")).select_by_value("1")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, '.history .sample[data-prompt="1"]'))
    for step in (steps[0], steps[-1]):
        [card] = browser.find_elements(By.CSS_SELECTOR, f'.sample[data-prompt="1"][data-step="{step}"]')
        assert on_screen(browser, card)
        [record] = [r for r in records if r["index"] == 1 and r["step"] == step]
        assert completion_of(card) == shown(record["completion"])
        assert "mean_logprob" in card.find_element(By.CSS_SELECTOR, ".metrics").text  # its scalars beside it
    # The grid has both prompts' rows and a column per sampled step.
    click_view(browser, wait, "grid")
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.grid th.step")]
    assert headers == [f"step {s}" for s in steps]
    assert len(browser.find_elements(By.CSS_SELECTOR, "table.grid .sample")) == 2 * len(steps)


def test_hostile_text_is_shown_as_text(browser, tensorboard):
    wait = open_dashboard(browser, tensorboard)
    pick_run(browser, wait, "hostile")
    cards = browser.find_elements(By.CSS_SELECTOR, '.sample[data-run="hostile"][data-prompt="0"]')
    assert [completion_of(card) for card in cards] == [f"{HOSTILE} 0", f"{HOSTILE} 4"]
    prompt = browser.find_element(By.CSS_SELECTOR, "th.prompt-cell .prompt .verbatim")
    assert prompt.get_attribute("textContent") == HOSTILE
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main b, main img")
    assert browser.execute_script("return window.__pwned === undefined")


def test_a_second_run_is_selectable_and_compared_at_the_same_step(browser, tensorboard, logdir):
    _, records = logdir
    wait = open_dashboard(browser, tensorboard)
    assert [o.text for o in Select(browser.find_element(By.ID, "run")).options] == ["hostile", "tb/version_0"]
    pick_run(browser, wait, "tb/version_0")
    click_view(browser, wait, "runs")
    slider = browser.find_element(By.ID, "step")
    browser.execute_script("arguments[0].value = 0; arguments[0].dispatchEvent(new Event('input'));", slider)
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, '.columns .sample[data-step="0"]')) == 2)
    cards = {c.get_attribute("data-run"): completion_of(c) for c in
             browser.find_elements(By.CSS_SELECTOR, ".columns .sample")}
    [first] = [r for r in records if r["index"] == 0 and r["step"] == 0]
    assert cards == {"tb/version_0": shown(first["completion"]), "hostile": f"{HOSTILE} 0"}


def test_two_steps_side_by_side_mark_the_changed_words(browser, tensorboard):
    wait = open_dashboard(browser, tensorboard)
    pick_run(browser, wait, "hostile")
    click_view(browser, wait, "steps")
    left, right = browser.find_elements(By.CSS_SELECTOR, 'table.compare .sample[data-prompt="0"]')
    assert (left.get_attribute("data-step"), right.get_attribute("data-step")) == ("0", "4")
    assert [d.text for d in left.find_elements(By.CSS_SELECTOR, ".del")] == ["0"]
    assert [i.text for i in right.find_elements(By.CSS_SELECTOR, ".ins")] == ["4"]


def test_the_per_token_view_colours_each_token_by_its_log_prob(browser, tensorboard, logdir):
    _, records = logdir
    wait = open_dashboard(browser, tensorboard)
    pick_run(browser, wait, "tb/version_0")
    browser.find_element(By.ID, "tokens").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".sample .tok"))
    # One script reads every card (a WebDriver call per token would take seconds).
    cards = browser.execute_script("""
        return [...document.querySelectorAll('.sample')].map((card) => ({
          prompt: Number(card.dataset.prompt), step: Number(card.dataset.step),
          text: card.querySelector('.text').textContent,
          tokens: [...card.querySelectorAll('.tok')].map((t) => [t.textContent, t.title,
                                                                 getComputedStyle(t).backgroundColor]),
        }));""")
    assert len(cards) == len(records)
    for card in cards:
        [record] = [r for r in records if r["index"] == card["prompt"] and r["step"] == card["step"]]
        assert len(card["tokens"]) == len(record["completion_ids"]) == len(record["tokens"])
        # The same text as without colours: the tokens cover it exactly.
        assert "".join(text for text, _, _ in card["tokens"]) == shown(record["completion"]) == card["text"]
        for (_, title, colour), logprob in zip(card["tokens"], record["token_logprobs"], strict=True):
            assert f"log-prob {logprob:.3f}" in title
            assert colour != "rgba(0, 0, 0, 0)"

def test_an_eos_is_shown_as_a_token(browser, tensorboard):
    wait = open_dashboard(browser, tensorboard)
    pick_run(browser, wait, "hostile")
    card = browser.find_element(By.CSS_SELECTOR, '.sample[data-prompt="1"][data-step="0"]')
    assert completion_of(card) == "ok doneEOS"  # the EOS's text (</s>) is the EOS token, not text
    assert '"</s>"' in card.find_element(By.CSS_SELECTOR, ".eos").get_attribute("title")
    browser.find_element(By.ID, "tokens").click()
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, '.sample[data-prompt="1"][data-step="0"] .tok'))
    card = browser.find_element(By.CSS_SELECTOR, '.sample[data-prompt="1"][data-step="0"]')
    assert [t.get_attribute("textContent") for t in card.find_elements(By.CSS_SELECTOR, ".tok")] == ["ok", " done"]
    assert "log-prob -0.500" in card.find_element(By.CSS_SELECTOR, ".eos").get_attribute("title")


def test_whitespace_control_characters_and_empty_completions_are_visible(browser, tensorboard):
    wait = open_dashboard(browser, tensorboard)
    pick_run(browser, wait, "hostile")
    marked, empty = (browser.find_element(By.CSS_SELECTOR, f'.sample[data-prompt="2"][data-step="{step}"]')
                     for step in (0, 4))
    assert completion_of(marked) == "a⇥\tb␇c··⏎\n··"
    assert completion_of(empty) == "∅"
    titles = {m.get_attribute("title") for m in marked.find_elements(By.CSS_SELECTOR, ".mark")}
    assert titles == {"tab", "control character U+0007", "trailing space", "newline"}
