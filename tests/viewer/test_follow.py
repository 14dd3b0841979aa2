"""`lightning-gen show --follow`: the last round, then each new round as a training run writes it, until Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from lightning_gen.text.records import RECORDS_FILE, sample_record
from lightning_gen.text.samples import Sample
from lightning_gen.viewer.follow import follow


def append(run, step, prompts=(0, 1)):
    """One round as the monitor writes it: a line per prompt."""
    run.mkdir(parents=True, exist_ok=True)
    with (run / RECORDS_FILE).open("a", encoding="utf-8") as out:
        for i in prompts:
            sample = Sample(f"prompt {i}", f" at {step} for {i}", [1], [2, 3], greedy=f" greedy {step}")
            out.write(json.dumps(sample_record(step, i, sample, tag="samples")) + "\n")


def blocks(text):
    """The steps of the round blocks printed, in order."""
    return [int(line.split("step ")[1].split()[0]) for line in text.splitlines() if line.startswith("━━ ")]


def test_the_last_round_then_each_new_one_never_half_a_round(tmp_path):
    run = tmp_path / "tb" / "version_0"
    append(run, 0)
    append(run, 50)
    writes = iter([lambda: append(run, 100, prompts=(0,)), lambda: append(run, 100, prompts=(1,))])

    def sleep(_):  # the training run writes while the viewer waits: a round's prompts one poll apart
        next(writes, lambda: None)()

    out = io.StringIO()
    follow(tmp_path, tag="samples", prompts=None, width=80, out=out, interval=0.0, rounds=1, sleep=sleep)
    text = out.getvalue()
    assert text.startswith(f"lightning-gen: 1 earlier round(s) of tb/version_0: lightning-gen show {run}\n")
    assert blocks(text) == [50, 100]
    last = text.split("step 100")[1]
    for i in (0, 1):
        assert re.search(rf"\nprompt {i} │  at 100 for {i} +│  greedy 100\n", last), last


def test_waits_for_a_run_that_has_not_written_yet_and_diffs_rounds(tmp_path):
    run = tmp_path / "run"
    writes = iter([lambda: None, lambda: append(run, 0), lambda: None, lambda: append(run, 5)])
    out = io.StringIO()
    follow(tmp_path, tag="samples", prompts=[1], width=80, out=out, interval=0.0, rounds=1, diff=True,
           sleep=lambda _: next(writes, lambda: None)())
    text = out.getvalue()
    assert text.startswith(f"lightning-gen: waiting for samples with tag 'samples' under '{tmp_path}'")
    assert blocks(text) == [0, 5] and "prompt 0" not in text
    assert re.search(r"\nprompt 1 │  50% │  at 5 for 1 +│  greedy \[-0-\]\{\+5\+\}\n", text), text


def test_the_command_watches_until_ctrl_c(tmp_path):
    run = tmp_path / "tb" / "version_0"
    append(run, 0)
    env = {**os.environ, "NO_COLOR": "1"}
    # Ctrl-C as in a terminal: a suite started in the background (`pytest &`) has SIGINT ignored, and a child
    # inherits that, so the viewer would never see the interrupt.
    process = subprocess.Popen([sys.executable, "-m", "lightning_gen.viewer.cli", "show", str(tmp_path), "--follow",
                                "--interval", "0.1", "--width", "80"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""

    def read_until(step):
        nonlocal seen
        deadline = time.monotonic() + 60
        while step not in blocks(seen):
            assert time.monotonic() < deadline, seen
            if select.select([process.stdout], [], [], 0.5)[0]:
                seen += os.read(process.stdout.fileno(), 65536).decode()

    try:
        read_until(0)
        append(run, 50)
        read_until(50)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    assert code == 0, process.stderr.read().decode()
    assert blocks(seen) == [0, 50] and "prompt 1 │  at 50 for 1" in seen
