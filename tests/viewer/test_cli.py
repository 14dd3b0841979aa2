"""`lightning-gen show/export`: samples read back from a hand-written samples.jsonl and from a real run's events."""

from __future__ import annotations

import json

import pytest
from tiny import TinyLM, text_events, trainer

from lightning_gen import GenerationMonitor
from lightning_gen.text.rendering import escape, parse_sample_markdown, sample_markdown, unescape
from lightning_gen.text.samples import Sample
from lightning_gen.text.visible import plain, visible
from lightning_gen.viewer.cli import main
from lightning_gen.viewer.show import render_show

HOSTILE = [
    "",
    "plain words",
    "<eos></s><|endoftext|>",
    "# heading\n* item\n1. one\n> quote",
    "a | b | c",
    "  two leading spaces,   a run,  and trailing  ",
    " one leading space",
    "x\n\n  y\n",
    "&#60; &amp; &#160; &nbsp; &#x41;",
    "<br><br><em>reference:</em> not a reference",
    "<strong>bold</strong> **also** __this__ `code`",
    "back\\slash \\n \\\\",
    "\u00a0literal no-break space\u00a0",
    "emoji 😀, accents é, CJK 漢字",
    "123;456",
]


# ----------------------------------------------------------------- parsing TensorBoard's stored text
@pytest.mark.parametrize("text", HOSTILE)
def test_unescape_inverts_escape(text):
    assert unescape(escape(text)) == text
    assert unescape(escape(text, starts_line=False)) == text


def test_unescape_normalises_what_escape_normalises():
    assert unescape(escape("a\r\nb\rc\td")) == "a\nb\nc    d"


@pytest.mark.parametrize("prompt", ["Hi", "ends in a newline\n", "<|im_start|>", "  indented"])
@pytest.mark.parametrize("completion", HOSTILE[:8] + HOSTILE[9:11])
def test_parse_sample_markdown_round_trips(prompt, completion):
    for greedy, reference in ((None, None), (completion[::-1], None), (None, "ref | <eos>"), ("g\n", " r  ")):
        sample = Sample(prompt, completion, [1], [2], reference=reference, greedy=greedy)
        assert parse_sample_markdown(sample_markdown(sample)) == Sample(prompt, completion, [], [], reference, greedy)


def test_text_in_another_shape_is_a_completion():
    assert parse_sample_markdown("just text&#33;") == Sample("", "just text!", [], [])


# ----------------------------------------------------------------- a hand-written samples.jsonl
def record(step, index, prompt, completion, **extra):
    return {"step": step, "tag": "samples", "index": index, "prompt": prompt, "completion": completion,
            "greedy": None, "reference": None, "prompt_ids": [1], "completion_ids": [2, 3],
            "metrics": {"length": 2.0}, **extra}


@pytest.fixture
def logdir(tmp_path):
    run = tmp_path / "tb" / "version_0"
    run.mkdir(parents=True)
    rows = [
        record(0, 0, "Once", " upon zq"),
        record(0, 1, "def f(x):", "\n    return x"),
        record(100, 0, "Once", " upon a time"),
        record(100, 1, "def f(x):", "\n    return y"),
        record(200, 0, "Once", " upon a time there"),
        record(200, 1, "def f(x):", "\n    return y"),
        record(100, 0, "other", "tag", tag="other"),
    ]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def show(capsys, *args):
    code = main(["show", *map(str, args), "--width", "60"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_show_prints_each_prompt_then_a_row_per_step(logdir, capsys):
    code, out, _ = show(capsys, logdir)
    assert code == 0
    assert out.splitlines() == [
        "── samples/prompt_00 " + "─" * 39,
        "prompt: Once",
        "step │ completion",
        "─────┼" + "─" * 54,
        "   0 │  upon zq",
        " 100 │  upon a time",
        " 200 │  upon a time there",
        "",
        "── samples/prompt_01 " + "─" * 39,
        "prompt: def f(x):",
        "step │ completion",
        "─────┼" + "─" * 54,
        "   0 │ ⏎    return x",
        " 100 │ ⏎    return y",
        " 200 │ ⏎    return y",
    ]


def test_show_filters_prompts_and_steps(logdir, capsys):
    _, out, _ = show(capsys, logdir, "--prompt", 1, "--steps", 0, 200)
    assert "prompt_00" not in out and "prompt: def f(x):" in out
    assert [line.split("│")[0].strip() for line in out.splitlines() if "│" in line] == ["step", "0", "200"]
    code, out, err = show(capsys, logdir, "--steps", 5)
    assert code == 1 and out == ""
    assert "no samples match --steps 5 (prompts: 0, 1; steps: 0, 100, 200)" in err


def test_show_other_tag(logdir, capsys):
    _, out, _ = show(capsys, logdir, "--tag", "other")
    assert "other/prompt_00" in out and " 100 │ tag" in out


def on_a_terminal(args, tmp_path, *, rows, pager=True) -> tuple[str, str | None]:
    """``lightning-gen`` run with its stdout on a pseudo-terminal of ``rows`` x 60: what the terminal showed, and
    what the pager got (None if it did not run); the pager is a shell command that keeps what it reads."""
    import os
    import sys

    from pseudo_terminal import run_on_a_terminal

    paged = tmp_path / "paged.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "LIGHTNING_GEN_PAGER")}
    env["PAGER"] = f"cat > {paged}"
    command = [sys.executable, "-m", "lightning_gen.viewer.cli", *args] + ([] if pager else ["--no-pager"])
    shown, code, err = run_on_a_terminal(command, rows=rows, columns=60, env=env)
    assert code == 0, err
    return shown.decode().replace("\r\n", "\n"), paged.read_text() if paged.exists() else None


def test_a_pager_when_the_output_is_longer_than_the_screen(logdir, tmp_path, capsys):
    main(["show", str(logdir), "--width", "60", "--color", "always"])  # on a terminal, colours (the ⏎ marks dim)
    expected = capsys.readouterr().out
    assert expected.count("\n") == 15
    shown, paged = on_a_terminal(["show", str(logdir)], tmp_path, rows=10)
    assert (shown, paged) == ("", expected)  # all of it through the pager, nothing around it
    (tmp_path / "paged.txt").unlink()
    assert on_a_terminal(["show", str(logdir)], tmp_path, rows=40) == (expected, None)  # it fits: no pager
    assert on_a_terminal(["show", str(logdir)], tmp_path, rows=10, pager=False) == (expected, None)


def test_export_markdown(logdir, capsys):
    assert main(["export", str(logdir), "--format", "md", "--prompt", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "# lightning-gen samples",
        "",
        "## samples/prompt_01",
        "",
        "**Prompt:** `def f(x):`",
        "",
        "| step | completion |",
        "|---:|---|",
        "| 0 | `⏎    return x` |",
        "| 100 | `⏎    return y` |",
        "| 200 | `⏎    return y` |",
    ]


def test_export_markdown_escapes_only_what_markdown_needs(tmp_path, capsys):
    """Code spans: markdown characters stay as written; only a table's | is escaped, backticks get a longer fence,
    and an end of sequence is a mark after the text."""
    rows = [record(0, 0, "a|b", "<eos> *x* `y` & \\ &nbsp; "),
            record(5, 0, "a|b", " ok.</s>", eos=True, tokens=[" ok", ".", "</s>"], greedy="the end</s>")]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["export", str(tmp_path), "--format", "md"])
    out = capsys.readouterr().out
    assert "**Prompt:** `a|b`" in out
    assert "| 0 | ``<eos> *x* `y` & \\ &nbsp;·`` |  |" in out
    assert "| 5 | `  ok. ` ⟨EOS⟩ | `the end` ⟨EOS⟩ |" in out
    assert "&#" not in out and "<br>" not in out


def test_export_jsonl_to_a_file(logdir, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert main(["export", str(logdir), "--format", "jsonl", "--out", str(out), "--steps", "100"]) == 0
    assert "wrote 2 samples" in capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [{**record(100, 0, "Once", " upon a time"), "run": "tb/version_0", "token_logprobs": None},
                {**record(100, 1, "def f(x):", "\n    return y"), "run": "tb/version_0", "token_logprobs": None}]
    assert [{key: row[key] for key in want} for row, want in zip(rows, expected)] == expected and len(rows) == 2


def test_two_runs_are_told_apart(logdir, capsys):
    second = logdir / "tb" / "version_1"
    second.mkdir()
    (second / "samples.jsonl").write_text(json.dumps(record(0, 0, "Once", " again")) + "\n")
    _, out, _ = show(capsys, logdir, "--prompt", 0)
    assert [line.split(" ━")[0] for line in out.splitlines() if line.startswith("━━")] == [
        "━━ run tb/version_0: 1 prompt, 3 steps (0–200)", "━━ run tb/version_1: 1 prompt, 1 step (0)"]
    assert "── tb/version_0 · samples/prompt_00" in out and "── tb/version_1 · samples/prompt_00" in out
    assert main(["export", str(logdir), "--format", "md", "--prompt", "0"]) == 0
    headings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert headings == ["# lightning-gen samples", "## run `tb/version_0`", "### samples/prompt_00",
                        "## run `tb/version_1`", "### samples/prompt_00"]


def test_a_torn_line_is_skipped_with_a_warning(tmp_path, capsys):
    (tmp_path / "samples.jsonl").write_text(json.dumps(record(0, 0, "p", "ok")) + "\n" + '{"step": 2, "ta')
    code, out, err = show(capsys, tmp_path / "samples.jsonl")
    assert code == 0 and "   0 │ ok" in out
    assert "samples.jsonl:2: skipped" in err


def test_errors_name_the_path_and_set_the_exit_code(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["show", str(missing)]) == 2
    assert f"LOGDIR '{missing}' does not exist" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "md"]) == 1
    assert f"no samples with tag 'samples' under '{tmp_path}' (no samples.jsonl or event file)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path), "--format", "html"])
    assert exit_info.value.code == 2


def test_render_show_on_records_without_a_cli():
    from lightning_gen.viewer.runs import Record

    text = render_show([Record(".", "t", 3, 12345, "p", "")], width=30)
    assert "── t/prompt_03" in text and "12345 │" in text


# ----------------------------------------------------------------- a real run's TensorBoard events
def test_show_reads_a_real_runs_event_files(tmp_path, capsys):
    monitor = GenerationMonitor(["ab", "hello"], every_n_train_steps=2,
                                generation={"max_new_tokens": 6, "do_sample": True})
    fit = trainer(tmp_path, [monitor], max_steps=4)
    fit.fit(TinyLM())
    events = text_events(fit.logger.log_dir)
    assert sorted(events["samples/prompt_01"]) == [0, 2, 4]

    # Once the monitor also writes samples.jsonl, both sources must read the same; this test is about the events.
    written = sorted(tmp_path.rglob("samples.jsonl"))
    if written:
        main(["show", str(tmp_path), "--width", "200"])
        from_jsonl = capsys.readouterr().out
    for path in written:
        path.unlink()

    assert main(["show", str(tmp_path), "--width", "200"]) == 0
    out = capsys.readouterr().out
    if written:
        assert out == from_jsonl
    for i, prompt in enumerate(["ab", "hello"]):
        section = out.split(f"── samples/prompt_{i:02d} ")[1].split("\n\n")[0]
        assert f"prompt: {prompt}\n" in section
        for step, stored in sorted(events[f"samples/prompt_{i:02d}"].items()):
            sample = parse_sample_markdown(stored)
            assert sample.prompt == prompt and len(sample.completion) == 6
            assert f"\n{step:>4} │ {plain(visible(sample.completion))}" in section

    # from the events alone, ids are unknown
    assert main(["export", str(tmp_path), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["index"], r["step"]) for r in rows] == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 2), (1, 4)]
    assert rows[0]["run"] == "tb/version_0" and rows[0]["completion_ids"] is None
    assert rows[0]["completion"] == parse_sample_markdown(events["samples/prompt_00"][0]).completion


# ----------------------------------------------------------------- TaskMonitor's evaluations
def test_show_evaluations_prints_core_and_a_table_per_task(logdir, capsys):
    from lightning_gen.text.task_records import TASK_RECORDS_FILE, document_result, example_result, task_record

    def choices(step, right):
        examples = [example_result(i, correct=ok, prediction=0 if ok else 1, gold=0, correct_norm=ok,
                                   loglikelihoods=[-1.0, -2.0]) for i, ok in enumerate(right)]
        acc = sum(right) / len(right)
        return task_record(step, "mc", "multiple_choice", {"acc": acc, "acc_norm": acc, "centered": 2 * acc - 1},
                           examples)

    lines = [choices(0, [False, False, True, False]), task_record(0, "docs", "bits_per_byte", {"bpb": 4.0},
                                                                  [document_result(0, "a.txt", 4.0)]),
             choices(100, [True, True, False, False]), task_record(100, "docs", "bits_per_byte", {"bpb": 3.25},
                                                                   [document_result(0, "a.txt", 3.25)])]
    (logdir / "tb" / "version_0" / TASK_RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, out, _ = show(capsys, logdir, "--evaluations")
    assert code == 0
    assert out.splitlines() == [
        "── run tb/version_0: 2 tasks, 2 steps (0–100) ──────────────",
        "",
        "core (the mean centred accuracy)",
        "step   core",
        "───────────",
        "   0   -0.5",
        " 100      0",
        "",
        "mc (multiple choice, 4 examples)",
        "step    acc   acc_norm   centered   learned   forgotten",
        "─" * 55,
        "   0   0.25       0.25       -0.5",
        " 100    0.5        0.5          0        +2          −1",  # 0 and 1 learned, 2 forgotten
        "",
        "docs (bits per byte, 1 document)",
        "step    bpb",
        "───────────",
        "   0      4",
        " 100   3.25",
    ]
    _, later, _ = show(capsys, logdir, "--evaluations", "--steps", 100)
    assert "run tb/version_0: 2 tasks, 1 step (100)" in later
    assert [line.split()[0] for line in later.splitlines() if line[:4].strip().isdigit()] == ["100"] * 3
    _, beside, _ = show(capsys, logdir / "tb" / "version_0" / "samples.jsonl", "--evaluations")
    assert beside.splitlines()[1:] == out.splitlines()[1:]  # a run's samples.jsonl: its evaluations beside it
    (logdir / "sampled_only").mkdir()
    (logdir / "sampled_only" / "samples.jsonl").write_text(json.dumps(record(0, 0, "Hi", " a")) + "\n")
    code, _, err = show(capsys, logdir / "sampled_only", "--evaluations")
    assert code == 1 and "no evaluations under" in err and "a TaskMonitor writes one" in err
    with pytest.raises(SystemExit) as exit_:
        show(capsys, logdir, "--evaluations", "--diff")
    assert exit_.value.code == 2 and "--evaluations shows tasks, not prompts" in capsys.readouterr().err
