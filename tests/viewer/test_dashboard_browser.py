"""Samples for TensorBoard in a real browser: a real ``tensorboard`` on real and hand-written runs' logs, headless
Chromium at 1600×1000, on loopback only.

What a user sees, read from the page, one view at a time: the grid's selected step always beside the prompt
column, a prompt's history newest first on one screen, two steps with the greedy completions diffed, every
prompt across runs at matched steps, each task's evaluations with the examples that flipped, the curves that open
a step, the view kept in the URL, ←/→, and hostile text shown as text. Each test saves a screenshot of the page
(into ``$DASHBOARD_SCREENSHOTS`` if set, else a temporary folder). Skipped where Chromium, its driver or Selenium
is missing (CI installs them: ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from dashboard import CHROMEDRIVER, CHROMIUM, chromium, open_dashboard, screenshot, tensorboard

from lightning_gen.text.records import RECORDS_FILE, sample_record
from lightning_gen.text.samples import Sample
from lightning_gen.text import task_records as tr
from lightning_gen.text.visible import visible
from lightning_gen.viewer.tensorboard.plugin import PLUGIN_NAME

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless browser: install Debian's chromium and chromium-driver"),
    pytest.mark.timeout(180),
]

HOSTILE = '<script>alert(1)</script> <b>x</b> &amp; **x** <img src=x onerror="window.__pwned=1">'
EXAMPLE_STEPS = list(range(0, 650, 50))  # the example's 13 rounds
EVALUATED = list(range(0, 650, 100))  # and its 7 evaluations
QUESTION = 'Which comes next?\n<b>not bold</b> & "quoted"'
PROSE = ('The "for" statement is used to iterate over the elements of a sequence\n    (such as a string, tuple '
         'or list) or other iterable object.  An object is a __del__() and\n')


def shown(text: str) -> str:
    """What the dashboard shows for ``text`` (the marks' characters, no line breaks: those are <br>s)."""
    return "".join(piece.text for piece in visible(text))


def _write(run: Path, samples: list[tuple[int, int, Sample]]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    with (run / RECORDS_FILE).open("w", encoding="utf-8") as out:
        for step, index, sample in samples:
            out.write(json.dumps(sample_record(step, index, sample, tag="samples")) + "\n")


def _tiny_run(root: Path, version: int, every: int, max_steps: int) -> list[dict]:
    """A real training with the monitor (TinyLM, a char tokenizer, greedy beside sampled): its records."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tiny import TinyLM, trainer

    from lightning_gen import GenerationMonitor

    monitor = GenerationMonitor(["ab ", "hello"], every_n_train_steps=every, also_greedy=True,
                                generation={"max_new_tokens": 8, "do_sample": True})
    logger = TensorBoardLogger(str(root), name="tb", version=version)
    trainer(root, [monitor], max_steps=max_steps, logger=logger).fit(TinyLM())
    return [json.loads(line) for line in (root / "tb" / f"version_{version}" / RECORDS_FILE).open()]


def _example_like(run: Path) -> None:
    """The example's shape: 6 prompts × 13 rounds, 96-character completions full of newlines, a greedy one beside
    each, some ended by EOS, two prompts with a reference (and a reference loss)."""
    rng = random.Random(0)
    samples = []
    for step in EXAMPLE_STEPS:
        for i in range(6):
            start = rng.randrange(len(PROSE))
            text = (PROSE * 3)[start:start + 96]
            ended = rng.random() < 0.2
            completion = text[:40] + "<|endoftext|>" if ended else text
            tokens = [*text[:40], "<|endoftext|>"] if ended else list(text)
            metrics = {"mean_logprob": -4.4 + step / 200 + rng.random() / 3}
            if i >= 4:
                metrics["reference_loss"] = 4.6 - step / 200 + rng.random() / 3
            samples.append((step, i, Sample(
                f"prompt {i}: The for", completion, [1], list(range(len(tokens))), greedy=(PROSE * 2)[i:i + 96],
                reference=PROSE[:64] if i >= 4 else None, metrics=metrics, eos=ended, tokens=tokens,
                token_logprobs=[-1.0] * len(tokens))))
    _write(run, samples)


def _evaluations_like(run: Path) -> None:
    """TaskMonitor's records over the example's 7 evaluations, each kind of task, flips known in advance: word_order
    example i is right from round i % 6 + 1 on (its wrong pick the choice after the gold), except example 5, right
    at step 500 only; so from 500 to 600 word_order learned 11 and 17 and forgot 5."""
    def pick(gold, right):
        return gold if right else (gold + 1) % 4

    headers = [
        tr.task_header("word_order", "multiple_choice", [tr.example_header(
            i, [(f"{i}. {QUESTION}", f" choice {i}.{j}") for j in range(4)], task_type="multiple_choice",
            gold=i % 4) for i in range(20)]),
        tr.task_header("schema", "schema", [tr.example_header(
            i, [(f"The cat {i}", " sat down."), (f"A dog {i}", " sat down.")], task_type="schema", gold=0)
            for i in range(6)]),
        tr.task_header("ending", "language_modeling", [tr.example_header(
            i, [(f"count to {i}:", f" {i}")], task_type="language_modeling") for i in range(8)]),
        tr.task_header("held_out", "bits_per_byte", [tr.document_header(i, f"part{i}.txt") for i in range(2)]),
    ]
    lines = []
    for n, step in enumerate(EVALUATED):
        right = [n == 5 if i == 5 else n > i % 6 for i in range(20)]
        word_order = [tr.example_result(i, correct=ok, prediction=pick(i % 4, ok), gold=i % 4, correct_norm=ok,
                                     loglikelihoods=[-9.0 + (j == pick(i % 4, ok)) for j in range(4)])
                      for i, ok in enumerate(right)]
        schema = [tr.example_result(i, correct=(i + n) % 3 != 0, prediction=int((i + n) % 3 == 0), gold=0,
                                 correct_norm=True, loglikelihoods=[-3.0, -4.0]) for i in range(6)]
        ending = [tr.example_result(i, correct=n > i, loglikelihoods=[-1.0]) for i in range(8)]
        for name, kind, examples, baseline in (("word_order", "multiple_choice", word_order, 0.25),
                                               ("schema", "schema", schema, 0.5),
                                               ("ending", "language_modeling", ending, 0.0)):
            acc = sum(e["correct"] for e in examples) / len(examples)
            second = {"loss": 3.0 - acc} if kind == "language_modeling" else {"acc_norm": acc}
            lines.append(tr.task_record(step, name, kind, {"acc": acc, **second,
                                                         "centered": (acc - baseline) / (1 - baseline)}, examples))
        documents = [tr.document_result(i, f"part{i}.txt", 5.0 - 0.4 * n + 0.3 * i) for i in range(2)]
        lines.append(tr.task_record(step, "held_out", "bits_per_byte", {"bpb": 5.15 - 0.4 * n}, documents))
    run.mkdir(parents=True, exist_ok=True)
    (run / tr.TASK_RECORDS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run / tr.TASK_EXAMPLES_FILE).write_text("".join(json.dumps(header) + "\n" for header in headers))


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    records = {0: _tiny_run(root, 0, every=2, max_steps=4), 1: _tiny_run(root, 1, every=3, max_steps=6)}
    hostile = []
    for step in (0, 4):
        hostile.append((step, 0, Sample(HOSTILE, f"{HOSTILE} {step}", [1], [2], metrics={"mean_logprob": -1.0})))
        # Prompt 1 ends with an EOS token whose text the tokenizer writes out.
        hostile.append((step, 1, Sample("Say", "ok done</s>", [1], [5, 6, 1], token_logprobs=[-0.1, -3.0, -0.5],
                                        tokens=["ok", " done", "</s>"], eos=True)))
        # Prompt 2: whitespace and a control character at step 0, nothing at all at step 4.
        hostile.append((step, 2, Sample("Ws", "a\tb\x07c  \n  " if step == 0 else "", [1], [2])))
    _write(root / "hostile", hostile)
    _write(root / "diffs", [
        (step, i, Sample(f"p{i}", f"sampled {step} {i} " * 3, [1], [2], greedy=greedy))
        for step, greedies in ((0, ["the cat sat on the mat", "a b c"]), (5, ["x", "y"]),
                               (9, ["the dog sat on the mat", "a b c"]))
        for i, greedy in enumerate(greedies)])
    _write(root / "long", [(step, 0, Sample("p", f" at step {step}", [1], [2])) for step in range(0, 600, 10)])
    _example_like(root / "example")
    _evaluations_like(root / "example")
    _evaluations_like(root / "evaluated_only")  # a run with a TaskMonitor and no GenerationMonitor
    return root, records


@pytest.fixture(scope="module")
def url(logdir, tmp_path_factory):
    with tensorboard(logdir[0], tmp_path_factory.mktemp("tb") / "tensorboard.log") as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("DASHBOARD_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def at(run: str, **state) -> str:
    """The URL hash that opens the dashboard on ``run`` (and view, prompt, step, old, runs)."""
    return "".join(f"&p.{PLUGIN_NAME}.{key}={value}" for key, value in {"run": run, **state}.items())


def rects(browser, *selectors) -> list[dict]:
    """The bounding boxes of the first element matching each selector (None where none does); for ``main``, the
    part that shows content (without its scrollbars)."""
    return browser.execute_script("""
        return arguments[0].map((s) => {
          const e = document.querySelector(s);
          if (!e) return null;
          const r = e.getBoundingClientRect().toJSON();
          if (s !== 'main') return r;
          return {...r, right: r.left + e.clientLeft + e.clientWidth, bottom: r.top + e.clientTop + e.clientHeight};
        });""", list(selectors))


def press(browser, wait, key, step):
    browser.find_element(By.TAG_NAME, "main").send_keys(key)
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "output.step-label").text == str(step))


# ----------------------------------------------------------------- the grid
def test_grid_keeps_the_selected_step_beside_the_prompt_column_and_nothing_shows_through(browser, url, shots):
    wait = open_dashboard(browser, url, at("example"))
    main, corner, last = rects(browser, "main", "th.corner", "th.step.current")
    assert corner["left"] == main["left"]  # the sticky column at the very edge: no gutter beside it
    assert last["right"] <= main["right"] and last["left"] >= corner["right"] - 1
    # Every step in turn, down to step 0 (which used to scroll under the prompt column), by the ← key.
    for step in reversed(EXAMPLE_STEPS[:-1]):
        press(browser, wait, Keys.ARROW_LEFT, step)
        corner, header = rects(browser, "th.corner", "th.step.current")
        assert header["left"] >= corner["right"] - 1 and header["right"] <= main["right"] + 1, step
        assert browser.find_element(By.CSS_SELECTOR, "th.step.current").text == f"step {step}"
    press(browser, wait, Keys.ARROW_RIGHT, 50)
    screenshot(browser, shots / "grid.png")
    browser.execute_script("document.querySelector('main').scrollLeft = 900")  # text scrolled under the column
    hits = browser.execute_script("""
        const cell = document.querySelector('tbody th.prompt-cell').getBoundingClientRect();
        const out = [];
        for (let x = cell.left + 1; x < cell.right; x += 8) {
          for (const y of [cell.top + 5, (cell.top + cell.bottom) / 2, cell.bottom - 5]) {
            out.push(!!document.elementFromPoint(x, y).closest('th.prompt-cell'));
          }
        }
        return out;""")
    assert hits and all(hits)  # the prompt column hides what scrolls under it, to its last pixel
    screenshot(browser, shots / "grid-scrolled.png")


# ----------------------------------------------------------------- a prompt's history
def test_history_is_newest_first_and_a_13_round_run_fits_one_screen(browser, url, shots):
    wait = open_dashboard(browser, url, at("example", view="history", prompt=4))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.history tbody tr")
    assert [int(r.get_attribute("data-step")) for r in rows] == EXAMPLE_STEPS[::-1]
    [main] = rects(browser, "main")
    fits = browser.execute_script("""
        return [...document.querySelectorAll('table.history tbody tr')].every((row) => {
          const r = row.getBoundingClientRect(); return r.top >= arguments[0].top && r.bottom <= arguments[0].bottom;
        });""", main)
    assert fits  # step 0 and the last on one screen, with the prompt, its reference and its curves above
    assert browser.find_element(By.CSS_SELECTOR, "tr.current").get_attribute("data-step") == "600"
    screenshot(browser, shots / "history.png")
    browser.find_element(By.ID, "oldest-first").click()
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "table.history tbody tr").get_attribute("data-step") == "0")
    steps = [int(r.get_attribute("data-step")) for r in browser.find_elements(By.CSS_SELECTOR, "table.history tbody tr")]
    assert steps == EXAMPLE_STEPS


def test_history_scrolls_to_the_selected_step(browser, url, shots):
    wait = open_dashboard(browser, url, at("long", view="history", step=20))
    main, row = rects(browser, "main", "tr.current")
    assert browser.find_element(By.CSS_SELECTOR, "tr.current").get_attribute("data-step") == "20"
    header = rects(browser, "table.history thead")[0]
    # In view, not under the header (to a pixel: scroll positions are whole pixels, layout is not).
    assert row["top"] >= header["bottom"] - 1 and row["bottom"] <= main["bottom"] + 1
    assert browser.execute_script("return document.querySelector('main').scrollTop") > 0
    press(browser, wait, Keys.ARROW_LEFT, 10)  # ← to the step before, ever in view
    main, row = rects(browser, "main", "tr.current")
    assert row["bottom"] <= main["bottom"] + 1
    screenshot(browser, shots / "history-scrolled.png")


# ----------------------------------------------------------------- two steps
def test_compare_steps_diffs_the_greedy_completions_with_the_sampled_ones_beside(browser, url, shots):
    wait = open_dashboard(browser, url, at("diffs", view="steps"))
    Select(browser.find_element(By.ID, "old")).select_by_value("0")
    Select(browser.find_element(By.ID, "new")).select_by_value("9")
    wait.until(lambda b: [th.text for th in b.find_elements(By.CSS_SELECTOR, "table.compare thead th.step")]
               == ["step 0", "step 9"])
    first = browser.find_elements(By.CSS_SELECTOR, "table.compare tbody tr")[0]
    older, newer = first.find_elements(By.CSS_SELECTOR, ".sample")
    assert [d.text for d in older.find_elements(By.CSS_SELECTOR, ".greedy .del")] == ["cat"]
    assert [i.text for i in newer.find_elements(By.CSS_SELECTOR, ".greedy .ins")] == ["dog"]
    assert first.find_element(By.CSS_SELECTOR, "td.same").text == "83%"  # 5 of 6 words kept
    # The sampled completions are side by side, not diffed: sampling noise is not what the model learned.
    assert not browser.find_elements(By.CSS_SELECTOR, "table.compare .text .del, table.compare .text .ins")
    sampled = newer.find_element(By.CSS_SELECTOR, ".text")
    assert sampled.find_element(By.CSS_SELECTOR, ".label").text == "sampled"
    assert sampled.find_element(By.CSS_SELECTOR, ".verbatim").text == "sampled 9 0 sampled 9 0 sampled 9 0·"
    second = browser.find_elements(By.CSS_SELECTOR, "table.compare tbody tr")[1]
    assert second.find_element(By.CSS_SELECTOR, "td.same").text == "100%"
    screenshot(browser, shots / "compare-steps.png")


# ----------------------------------------------------------------- several runs
def test_compare_runs_shows_every_prompt_at_matched_steps(browser, url, logdir, shots):
    _, records = logdir
    wait = open_dashboard(browser, url, at("tb/version_0", view="runs", step=4, runs="tb/version_0,tb/version_1"))
    heads = {th.get_attribute("data-run"): th.text.splitlines() for th in
             browser.find_elements(By.CSS_SELECTOR, "table.across th.run")}
    # version_1 sampled every 3 steps: step 3 is its nearest to 4.
    assert heads == {"tb/version_0": ["tb/version_0", "step 4"],
                     "tb/version_1": ["tb/version_1", "step 3", "nearest to 4"]}
    cards = browser.find_elements(By.CSS_SELECTOR, "table.across .sample")
    seen = {(c.get_attribute("data-run"), int(c.get_attribute("data-prompt"))):
            (int(c.get_attribute("data-step")), c.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent"))
            for c in cards}
    expected = {(f"tb/version_{v}", r["index"]): (r["step"], shown(r["completion"]))
                for v, step in ((0, 4), (1, 3)) for r in records[v] if r["step"] == step}
    assert seen == expected and len(seen) == 4  # both prompts, both runs
    screenshot(browser, shots / "compare-runs.png")
    # Unticking a run takes its column away.
    browser.find_element(By.CSS_SELECTOR, '.run-picker input[value="tb/version_1"]').click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "table.across th.run")) == 1)


# ----------------------------------------------------------------- curves, URL, keys
def test_a_point_of_a_prompts_curve_opens_that_step(browser, url, shots):
    wait = open_dashboard(browser, url, at("example"))
    points = browser.find_elements(
        By.CSS_SELECTOR, 'th.prompt-cell[data-prompt="4"] .curve[data-metric="reference_loss"] .point')
    assert len(points) == 13
    points[2].click()
    wait.until(lambda b: b.find_element(By.CSS_SELECTOR, "th.step.current").text == "step 100")
    marked = browser.find_element(
        By.CSS_SELECTOR, 'th.prompt-cell[data-prompt="4"] .curve[data-metric="mean_logprob"] .point.current')
    assert marked.get_attribute("data-step") == "100"
    corner, header = rects(browser, "th.corner", "th.step.current")
    assert header["left"] >= corner["right"] - 1
    screenshot(browser, shots / "curves.png")


def test_the_view_is_in_the_url_so_a_reload_opens_it_again(browser, url, shots):
    wait = open_dashboard(browser, url, at("example", view="steps", old=50, step=550))
    assert [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.compare thead th.step")] == [
        "step 50", "step 550"]
    browser.find_element(By.CSS_SELECTOR, 'button[data-view="history"]').click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "table.history"))
    Select(browser.find_element(By.ID, "prompt")).select_by_value("3")
    press(browser, wait, Keys.ARROW_LEFT, 500)
    browser.switch_to.default_content()
    shared = browser.current_url
    assert f"p.{PLUGIN_NAME}.view=history" in shared and f"p.{PLUGIN_NAME}.prompt=3" in shared
    browser.get("about:blank")
    browser.get(shared)
    browser.switch_to.frame(wait.until(lambda b: b.find_element(By.TAG_NAME, "iframe")))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "table.history tr.current"))
    assert Select(browser.find_element(By.ID, "run")).first_selected_option.text == "example"
    assert Select(browser.find_element(By.ID, "prompt")).first_selected_option.get_attribute("value") == "3"
    assert browser.find_element(By.CSS_SELECTOR, "tr.current").get_attribute("data-step") == "500"
    screenshot(browser, shots / "reloaded.png")


# ----------------------------------------------------------------- what any text looks like
def card(browser, run, prompt, step):
    return browser.find_element(By.CSS_SELECTOR, f'.sample[data-run="{run}"][data-prompt="{prompt}"][data-step="{step}"]')


def completion_of(element) -> str:
    return element.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent")


def test_hostile_text_is_shown_as_text(browser, url, shots):
    open_dashboard(browser, url, at("hostile"))
    assert [completion_of(card(browser, "hostile", 0, s)) for s in (0, 4)] == [f"{HOSTILE} 0", f"{HOSTILE} 4"]
    prompt = browser.find_element(By.CSS_SELECTOR, 'th.prompt-cell[data-prompt="0"] .prompt .verbatim')
    assert prompt.get_attribute("textContent") == HOSTILE
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main b, main img")
    assert browser.execute_script("return window.__pwned === undefined")
    screenshot(browser, shots / "hostile.png")


def test_whitespace_control_characters_eos_and_empty_completions_are_visible(browser, url, shots):
    open_dashboard(browser, url, at("hostile"))
    marked, empty = (card(browser, "hostile", 2, step) for step in (0, 4))
    assert completion_of(marked) == "a⇥b␇c··⏎··"
    assert len(marked.find_elements(By.CSS_SELECTOR, "br.nl")) == 1  # the grid keeps the line break
    assert completion_of(empty) == "∅"
    titles = {m.get_attribute("title") for m in marked.find_elements(By.CSS_SELECTOR, ".mark")}
    assert titles == {"tab", "control character U+0007", "trailing space", "newline"}
    ended = card(browser, "hostile", 1, 0)
    assert completion_of(ended) == "ok doneEOS"  # the EOS's text (</s>) is the EOS token, not text
    assert '"</s>"' in ended.find_element(By.CSS_SELECTOR, ".eos").get_attribute("title")
    screenshot(browser, shots / "marks.png")


def test_the_per_token_view_colours_each_token_by_its_log_prob(browser, url, logdir, shots):
    _, records = logdir
    wait = open_dashboard(browser, url, at("tb/version_0"))
    browser.find_element(By.ID, "tokens").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".sample .tok"))
    # One script reads every card (a WebDriver call per token would take seconds).
    cards = browser.execute_script("""
        return [...document.querySelectorAll('.sample')].map((card) => ({
          prompt: Number(card.dataset.prompt), step: Number(card.dataset.step),
          text: card.querySelector('.text').textContent,
          tokens: [...card.querySelectorAll('.text .tok')].map((t) => [t.textContent, t.title,
                                                                       getComputedStyle(t).backgroundColor]),
        }));""")
    assert len(cards) == len(records[0])
    for found in cards:
        [record] = [r for r in records[0] if r["index"] == found["prompt"] and r["step"] == found["step"]]
        assert len(found["tokens"]) == len(record["completion_ids"]) == len(record["tokens"])
        # The same text as without colours: the tokens cover it exactly.
        assert "".join(text for text, _, _ in found["tokens"]) == shown(record["completion"]) == found["text"]
        for (_, title, colour), logprob in zip(found["tokens"], record["token_logprobs"], strict=True):
            assert f"log-prob {logprob:.3f}" in title
            assert colour != "rgba(0, 0, 0, 0)"
    open_dashboard(browser, url, at("hostile", tokens=1))
    ended = card(browser, "hostile", 1, 0)
    assert [t.get_attribute("textContent") for t in ended.find_elements(By.CSS_SELECTOR, ".tok")] == [
        "ok", " done", "EOS"]
    assert "log-prob -0.500" in ended.find_element(By.CSS_SELECTOR, ".eos").get_attribute("title")
    screenshot(browser, shots / "tokens.png")


# ----------------------------------------------------------------- evaluations
# Read in one script each: a redraw between finding an element and reading it would leave a stale reference.
def chosen(browser, select_id: str) -> str:
    return browser.execute_script("return document.getElementById(arguments[0]).value", select_id)


def flipped(browser, task: str, kind: str) -> list[int]:
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((e) => Number(e.dataset.index))",
        f'.task-row[data-task="{task}"] .flips.{kind} .example')


def test_evaluations_show_each_tasks_curves_and_the_examples_that_flipped(browser, url, shots):
    open_dashboard(browser, url, at("example", view="evaluations"), ready=".task-row .example")
    rows = browser.find_elements(By.CSS_SELECTOR, "section.evaluations .task-row")
    assert [r.get_attribute("data-task") for r in rows] == ["core", "word_order", "schema", "ending", "held_out"]
    curves = {(r.get_attribute("data-task"), c.get_attribute("data-metric")):
              [int(p.get_attribute("data-step")) for p in c.find_elements(By.CSS_SELECTOR, ".point")]
              for r in rows for c in r.find_elements(By.CSS_SELECTOR, ".curve")}
    assert set(curves) == {("core", "core"), ("held_out", "bpb"), ("ending", "acc"), ("ending", "loss"),
                           ("ending", "centered"), *((task, metric) for task in ("word_order", "schema")
                                                     for metric in ("acc", "acc_norm", "centered"))}
    assert all(steps == EVALUATED for steps in curves.values())
    acc = browser.find_element(By.CSS_SELECTOR, '.task-row[data-task="word_order"] .curve[data-metric="acc"]')
    # The two steps compared, on every curve: the selected point, the older one ringed, and the change between.
    assert [p.get_attribute("data-step") for p in acc.find_elements(By.CSS_SELECTOR, ".point.current, .point.older")
            ] == ["500", "600"]
    assert (acc.find_element(By.CSS_SELECTOR, ".value").text, acc.find_element(By.CSS_SELECTOR, ".delta").text) == (
        "0.95", "+0.05")
    # The two steps from lists: by default the selected (the last) and the evaluated step before it.
    options = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#old option")]
    assert options == [str(s) for s in EVALUATED] and (chosen(browser, "old"), chosen(browser, "new")) == ("500", "600")
    assert flipped(browser, "word_order", "learned") == [11, 17] and flipped(browser, "word_order", "forgotten") == [5]
    forgotten = browser.find_element(By.CSS_SELECTOR, '.task-row[data-task="word_order"] .forgotten .example')
    assert forgotten.find_element(By.CSS_SELECTOR, ".question").get_attribute("textContent") == shown(f"5. {QUESTION}")
    assert forgotten.find_element(By.CSS_SELECTOR, ".question .mark.newline")  # the samples' marks
    options = forgotten.find_elements(By.CSS_SELECTOR, ".option")
    assert [o.find_element(By.CSS_SELECTOR, ".verbatim").get_attribute("textContent") for o in options] == [
        f" choice 5.{j}" for j in range(4)]  # as scored: the delimiter, then the choice
    badges = [[b.text for b in o.find_elements(By.CSS_SELECTOR, ".badge")] for o in options]
    assert badges == [[], ["gold", "step 500"], ["step 600"], []]  # right at 500 (the gold), the next one at 600
    assert not browser.find_elements(By.CSS_SELECTOR, "main b, main script")  # the question's <b> is text
    ending = browser.find_element(By.CSS_SELECTOR, '.task-row[data-task="ending"] .learned .example')
    assert ending.find_element(By.CSS_SELECTOR, ".continuation").get_attribute("textContent") == " 5"
    documents = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in
                 browser.find_elements(By.CSS_SELECTOR, '.task-row[data-task="held_out"] table.documents tbody tr')]
    assert documents == [["part0.txt", "3", "2.6", "-0.4"], ["part1.txt", "3.3", "2.9", "-0.4"]]
    screenshot(browser, shots / "evaluations.png")


def test_evaluations_steps_move_by_keys_by_curve_points_and_lists_and_stay_in_the_url(browser, url, shots):
    wait = open_dashboard(browser, url, at("example", view="evaluations"), ready=".task-row .example")
    browser.find_element(By.TAG_NAME, "main").send_keys(Keys.ARROW_LEFT)
    wait.until(lambda b: (chosen(b, "old"), chosen(b, "new")) == ("400", "500"))
    wait.until(lambda b: flipped(b, "word_order", "learned") == [4, 5, 10, 16])
    # A point of a task's curve selects its step; the older step follows, the one before.
    browser.find_element(By.CSS_SELECTOR, '.task-row[data-task="word_order"] .curve[data-metric="acc"] '
                                          '.point[data-step="100"]').click()
    wait.until(lambda b: (chosen(b, "old"), chosen(b, "new")) == ("0", "100"))
    wait.until(lambda b: flipped(b, "word_order", "learned") == [0, 6, 12, 18])
    Select(browser.find_element(By.ID, "new")).select_by_value("300")
    Select(browser.find_element(By.ID, "old")).select_by_value("100")
    wait.until(lambda b: flipped(b, "word_order", "learned") == [1, 2, 7, 8, 13, 14, 19])
    Select(browser.find_element(By.ID, "task")).select_by_value("word_order")
    wait.until(lambda b: b.execute_script(
        "return [...document.querySelectorAll('.task-row')].map((r) => r.dataset.task)") == ["word_order"])
    browser.switch_to.default_content()
    shared = browser.current_url
    for entry in ("view=evaluations", "step=300", "old=100", "task=word_order"):
        assert f"p.{PLUGIN_NAME}.{entry}" in shared
    browser.get("about:blank")
    browser.get(shared)
    browser.switch_to.frame(wait.until(lambda b: b.find_element(By.TAG_NAME, "iframe")))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".task-row .example"))
    assert (chosen(browser, "old"), chosen(browser, "new"), chosen(browser, "task")) == ("100", "300", "word_order")
    assert flipped(browser, "word_order", "learned") == [1, 2, 7, 8, 13, 14, 19]
    screenshot(browser, shots / "evaluations-reloaded.png")


def test_a_run_without_evaluations_says_how_to_add_them_and_one_without_samples_opens_on_them(browser, url, shots):
    open_dashboard(browser, url, at("hostile", view="evaluations"), ready="main p.hint")
    hint = browser.find_element(By.CSS_SELECTOR, "main p.hint").text
    assert "no evaluations.jsonl" in hint and "TaskMonitor" in hint
    screenshot(browser, shots / "evaluations-none.png")
    wait = open_dashboard(browser, url, at("evaluated_only"), ready=".task-row .example")
    assert browser.find_element(By.CSS_SELECTOR, ".views button.active").get_attribute("data-view") == "evaluations"
    browser.find_element(By.CSS_SELECTOR, 'button[data-view="grid"]').click()
    wait.until(lambda b: "GenerationMonitor" in b.find_element(By.CSS_SELECTOR, "main p.hint").text)


def test_the_first_evaluation_compared_with_itself_says_so(browser, url):
    open_dashboard(browser, url, at("example", view="evaluations", step=0), ready=".task-row .missing")
    assert (chosen(browser, "old"), chosen(browser, "new")) == ("0", "0")
    notes = [n.text for n in browser.find_elements(By.CSS_SELECTOR, ".task-row .missing")]
    assert notes == ["step 0 compared with itself: choose another step to see what changed"] * 4
