"""The decode loop's shortcuts (issue 6): they change the work per token, never the tokens.

* With the maximum length as the only stopping criterion, the loop counts instead of evaluating criteria.
* KV-cache adapters pass each step's ``input_pos`` as a slice of one ``arange``, not a new tensor per token.
* A user's `MaxLengthCriteria` beyond ``max_length`` sizes the token buffer, as HF lets it run that far.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import MaxLengthCriteria, StoppingCriteria, StoppingCriteriaList

from lightning_gen import generate
from lightning_gen.decoding.generation import _stops_only_at

V = 11


class Recorder(nn.Module):
    """A litgpt-protocol bigram model that records every ``input_pos`` it is given."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(V, V)
        self.positions: list[list[int]] = []
        self.cache_sizes: list[int] = []

    def set_kv_cache(self, batch_size: int, max_seq_length: int, device=None) -> None:
        self.cache_sizes.append(max_seq_length)

    def clear_kv_cache(self) -> None:
        pass

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        self.positions.append(input_pos.tolist())
        return self.table(idx)  # (B, T, V)


def test_stops_only_at_recognises_a_lone_max_length():
    assert _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9)]), 9)
    assert not _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9)]), 10)
    # Its "exceeded max_position_embeddings" warning could fire: evaluate it as HF does.
    assert not _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9, max_position_embeddings=4)]), 9)
    assert _stops_only_at(StoppingCriteriaList([MaxLengthCriteria(max_length=9, max_position_embeddings=8)]), 9)

    class Longer(MaxLengthCriteria):
        pass

    assert not _stops_only_at(StoppingCriteriaList([Longer(max_length=9)]), 9)


def test_kv_cache_positions_are_consecutive_across_the_regrowth():
    model = Recorder()
    prompt = torch.randint(0, V, (2, 250), generator=torch.Generator().manual_seed(0))
    out = generate(model, prompt, max_new_tokens=20, adapter="litgpt", do_sample=True,
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 270)
    assert model.positions[0] == list(range(250))
    assert model.positions[1:] == [[p] for p in range(250, 269)]


def test_a_user_max_length_beyond_max_new_tokens_runs_that_far():
    model = Recorder()
    prompt = torch.randint(0, V, (2, 4), generator=torch.Generator().manual_seed(0))
    out = generate(model, prompt, max_new_tokens=3, adapter="litgpt", stopping_criteria=[MaxLengthCriteria(12)])
    assert out.shape == (2, 12) and model.cache_sizes == [12]


class StopAfter(StoppingCriteria):
    """Stops every row once the sequence reaches ``length``: an extra criterion, so the loop evaluates them."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        self.calls += 1
        return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.length, dtype=torch.bool)


def test_counted_and_evaluated_stopping_give_the_same_tokens():
    prompt = torch.randint(0, V, (3, 5), generator=torch.Generator().manual_seed(1))
    options = dict(max_new_tokens=8, adapter="litgpt", do_sample=True, top_k=4)
    counted = generate(Recorder(), prompt, generator=torch.Generator().manual_seed(5), **options)
    stop = StopAfter(100)  # never fires: only forces the evaluated path
    evaluated = generate(Recorder(), prompt, generator=torch.Generator().manual_seed(5), stopping_criteria=[stop],
                         **options)
    assert torch.equal(counted, evaluated) and stop.calls == 8


# --------------------------------------------------------------------------------------------------
# EOS without a per-token check (issue 15): rows that end keep receiving pad, "has every row ended?" is read every
# `EOS_CHECK_EVERY` steps, and the steps run past HF's stop are taken back: tokens trimmed, generator rewound.
# --------------------------------------------------------------------------------------------------
import pytest  # noqa: E402
from tiny import PAD_ID, tiny_gpt2  # noqa: E402
from transformers import GPT2LMHeadModel  # noqa: E402

from lightning_gen.decoding import _sampler  # noqa: E402
from lightning_gen.decoding import generation  # noqa: E402

MAX_NEW = 12


@pytest.fixture(scope="module")
def wide_gpt2() -> GPT2LMHeadModel:
    """4096 tokens: a batch of 2 has 8192 scores, enough for the exact route."""
    return tiny_gpt2(4096, n_layer=1, initializer_range=0.5)


def _hf(model, prompt, seed, **options):
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), **options)
    return out, torch.get_rng_state()


def _eos_ending_every_row(model, prompt, seed, options):
    """EOS ids that end every row early (by step 7), the first row by step 2: tokens the rows emit with ``seed``,
    which they emit again until they end (a row's tokens do not depend on the others')."""
    probe, _ = _hf(model, prompt, seed, max_new_tokens=MAX_NEW, eos_token_id=None, **options)
    new = probe[:, prompt.shape[1]:]
    return sorted({int(new[0, 2])} | {int(new[row, 7]) for row in range(1, len(new))})


ROUTES = {  # (model fixture, batch, options): each sampler route once, and greedy
    "exact": ("wide_gpt2", 2, dict(do_sample=True, top_k=50, top_p=0.9)),
    "exact, no top-k": ("wide_gpt2", 2, dict(do_sample=True, top_p=0.9, top_k=0)),
    "plain (small steps)": ("tiny_gpt2", 3, dict(do_sample=True, top_k=20)),
    "plain (shortcuts off)": ("wide_gpt2", 2, dict(do_sample=True, temperature=0.7)),
    "sync-free": ("tiny_gpt2", 3, dict(do_sample=True, temperature=0.7, top_k=20)),
    "greedy": ("tiny_gpt2", 3, dict(do_sample=False, repetition_penalty=1.3)),
}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("check", ["early", "at the last step"])
def test_steps_past_hfs_stop_are_taken_back(route, check, request, monkeypatch):
    fixture, batch, options = ROUTES[route]
    model = request.getfixturevalue(fixture)
    # Each route on purpose, whatever LIGHTNING_GEN_FAST_PATH says; "sync-free" as the loop runs off the CPU.
    monkeypatch.setattr(_sampler, "ENABLED", route != "plain (shortcuts off)")
    if route == "sync-free":
        sync_free = _sampler.Sampler.__init__
        monkeypatch.setattr(_sampler.Sampler, "__init__",
                            lambda self, processors, **kw: sync_free(self, processors, **{**kw, "sync_free": True}))
    vocab = model.config.vocab_size
    prompt = torch.randint(3, vocab, (batch, 5), generator=torch.Generator().manual_seed(4))
    eos = _eos_ending_every_row(model, prompt, 11, options)
    common = dict(max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=PAD_ID, **options)
    reference, reference_state = _hf(model, prompt, 11, **common)
    taken = reference.shape[1] - prompt.shape[1]
    assert 2 < taken < MAX_NEW, f"design: every row ends on EOS, the last one after step 2\n{reference}"
    # Check first after HF's stop (and before the last step), or only at the last step: either way past it.
    if check == "early":
        every = next(e for e in range(2, taken) if taken % e and -(-taken // e) * e < MAX_NEW)
    else:
        every = MAX_NEW + 1
    monkeypatch.setitem(generation.EOS_CHECK_EVERY, "cpu", every)
    _sampler.stats.reset()
    generator = torch.Generator().manual_seed(11)
    ours = generate(model, prompt, generator=generator, **common)
    assert torch.equal(ours, reference)
    if options["do_sample"]:
        assert torch.equal(generator.get_state(), reference_state)
        route_taken = {"exact": _sampler.stats.exact, "plain": _sampler.stats.plain,
                       "sync-free": _sampler.stats.sync_free}[route.split(",")[0].split(" (")[0]]
        assert route_taken > taken, "design: the loop ran past HF's stop"


def test_the_check_every_step_on_the_cpu_never_runs_past_the_stop(tiny_gpt2, monkeypatch):
    monkeypatch.setattr(_sampler, "ENABLED", True)
    prompt = torch.randint(3, 96, (3, 5), generator=torch.Generator().manual_seed(4))
    options = dict(do_sample=True, top_k=20)
    eos = _eos_ending_every_row(tiny_gpt2, prompt, 11, options)
    _sampler.stats.reset()
    out = generate(tiny_gpt2, prompt, generator=torch.Generator().manual_seed(11), max_new_tokens=MAX_NEW,
                   eos_token_id=eos, pad_token_id=PAD_ID, **options)
    assert generation.EOS_CHECK_EVERY["cpu"] == 1
    assert _sampler.stats.plain == out.shape[1] - prompt.shape[1] < MAX_NEW


def test_the_benchmark_matrix_smoke_run_gives_hfs_tokens_in_every_row():
    # `benchmarks/matrix.py --quick`: four small rows, one round each (~10 s); its exit status says whether ours
    # gave HF's tokens in every row. Times are printed, never asserted.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "matrix.py"), "--quick"], capture_output=True,
                          text=True, timeout=120, cwd=root)
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "tiny" in line]
    assert done.returncode == 0 and len(rows) == 4, done.stdout + done.stderr[-2000:]
    assert all(line.rstrip(" |").endswith("1/1") for line in rows)
