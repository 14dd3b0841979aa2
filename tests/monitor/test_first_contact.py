"""First contact: a user's own model and tokenizer, as they come, in ``self.model`` with the monitor's defaults.

What the monitor assumes is verified at the start of fit: a context nothing advertises is found by probing, the ids
a tokenizer can decode are asked of it, each probe failure names its cause and the argument to set, a one-off
exception never switches a feature off, the plan is settled once, and whatever a round writes into a module is put
back and said.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from tiny import (
    GPT,
    SYMBOLS,
    CharTokenizer,
    Module,
    byte_tiktoken,
    meta_pkl_tokenizer,
    text_events,
    trainer,
)
from transformers import LogitsProcessor

from lightning_gen import GenerationMonitor
from lightning_gen.decoding.adapters import PlainAdapter
from lightning_gen.monitor.probe import ProbeError

PROMPTS = ["Once upon a time", "The cat"]

def _fit(tmp_path, module, console, **monitor_args):
    monitor = GenerationMonitor(PROMPTS, every_n_train_steps=2, **monitor_args)
    run = trainer(tmp_path, [monitor], max_steps=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.fit(module)
    warned = [str(w.message) for w in caught if "GenerationMonitor" in str(w.message)]
    lines = [m for m in console.messages if "GenerationMonitor: sampling" in m]
    return monitor, run, warned, lines


def _samples(run) -> dict[int, str]:
    return text_events(run.logger.log_dir)["samples/prompt_00"]


# ------------------------------------------------------------------------------------------------ found by probing
def test_a_users_own_gpt_gets_its_context_found_by_probing_and_samples_every_round(tmp_path, console):
    """64 new tokens after a prompt overrun its 64 positions: the probe finds 64 and the rounds crop to it."""
    monitor, run, warned, lines = _fit(tmp_path, Module(), console)
    assert warned == []
    assert sorted(_samples(run)) == [0, 2, 4]
    assert "context 64 (found by probing)" in lines[0] and "vocabulary 67 (the model's 67 logits)" in lines[0]
    assert monitor._plan.context == 64


@pytest.mark.parametrize("tokenizer", ["meta.pkl", "tiktoken"])
def test_a_tokenizer_that_says_less_than_the_logits_samples_only_ids_it_decodes(tmp_path, console, tokenizer):
    """nanoGPT's meta.pkl lambdas (no size) on 128 logits, or tiktoken (`n_vocab` only) on padded logits."""
    if tokenizer == "tiktoken":
        pytest.importorskip("tiktoken")
        tok, logits, decodable = byte_tiktoken(), 320, 261
        how = "the tokenizer's size"
    else:
        tok, logits, decodable = meta_pkl_tokenizer(), 128, len(SYMBOLS)
        how = "the ids the tokenizer's `decode` accepts, found by probing"
    monitor, run, warned, lines = _fit(tmp_path, Module(GPT(logits, block=128), tok, vocab=logits), console,
                                       generation={"max_new_tokens": 48, "do_sample": True, "top_k": 0})
    assert warned == []
    assert sorted(_samples(run)) == [0, 2, 4]
    assert f"vocabulary {decodable} ({how}, below the model's {logits} logits)" in lines[0]
    samples = monitor.sample_now(run, step=100)
    assert all(max(s.completion_ids) < decodable for s in samples)


# ------------------------------------------------------------------------------------------------ errors that say why
class Explodes(LogitsProcessor):
    def __call__(self, input_ids, scores):
        raise RuntimeError("processor bug")


class NotLogits(GPT):
    def forward(self, idx):
        return super().forward(idx).argmax(-1)  # (B, T) ids


class NanInEval(GPT):
    def forward(self, idx):
        logits = super().forward(idx)
        return logits if self.training else logits * float("nan")


class Shorter(GPT):
    """Says `max_seq_len=64` but its position table has 40 rows."""

    def __init__(self):
        super().__init__(block=40)
        self.max_seq_len = 64


def chars() -> CharTokenizer:
    """`Module`'s own tokenizer: the 67 symbols, a newline ends a text."""
    return CharTokenizer(SYMBOLS, eos=True)


class BadDecode(CharTokenizer):
    def decode(self, ids):
        if any(i > 40 for i in ids):
            raise KeyError(max(ids))
        return super().decode(ids)


CAUSES = [
    # (what is wrong, the network, the tokenizer, monitor arguments, the words of the error)
    ("not logits", NotLogits, chars, {}, ["integer tensor", "token ids?", "set `model_attr`"]),
    ("ids beyond the embedding", lambda: GPT(vocab=30), chars, {},
     ["takes ids below 30 (found by probing)", "input holds ids", "`tokenizer`", "`vocab_size`"]),
    ("ids beyond the vocabulary", lambda: GPT(vocab=67), chars, {"vocab_size": 20},
     ["outside the vocabulary [0, 20) (`vocab_size`)", "`tokenizer`"]),
    ("a length the model refuses", Shorter, chars, {},
     ["refuses a sequence of", "its context is 64 (`max_seq_len` of `pl_module.model`)",
      "takes up to 40 (found by probing)", "`context_length=40`"]),
    ("NaN in eval mode", NanInEval, chars, {}, ["NaN or inf in eval mode, before training has started"]),
    ("a failing logits processor", GPT, chars, {"logits_processors": [Explodes()]},
     ["`logits_processors[0]` (Explodes) raised RuntimeError: processor bug"]),
    ("a failing decode", GPT, lambda: BadDecode(SYMBOLS, eos=True), {},
     ["`decode` failed with KeyError", "`vocab_size`", "`tokenizer`"]),
]


@pytest.mark.parametrize(("cause", "network", "tokenizer", "arguments", "words"), CAUSES, ids=[c[0] for c in CAUSES])
def test_each_probe_error_names_its_cause_and_the_argument_to_set(tmp_path, cause, network, tokenizer, arguments,
                                                                   words):
    module = Module(network(), tokenizer())
    monitor = GenerationMonitor(PROMPTS, every_n_train_steps=2, **arguments)
    run = trainer(tmp_path, [monitor], max_steps=2)
    with pytest.raises(ProbeError) as caught:
        run.fit(module)
    assert run.global_step == 0
    message = str(caught.value)
    assert all(word in message for word in words), message
    if cause != "not logits":  # only a wrong network is answered by `model_attr`
        assert "model_attr" not in message


# ------------------------------------------------------------------------------------------------ no feature lost
class FlakyScoring(PlainAdapter):
    """Teacher-forced forwards (the probe's first, the scoring ones) that fail when told to: a flaky call, not a
    model that cannot be scored."""

    failures: list[bool] = []  # popped one per call: True fails it

    def sequence_logits(self, input_ids):
        if self.failures and self.failures.pop(0):
            raise RuntimeError("flaky")
        return super().sequence_logits(input_ids)


def test_a_failing_scoring_forward_in_the_probe_is_a_probe_error_not_a_run_without_scores(tmp_path):
    FlakyScoring.failures = [False, True]  # the probe's first forward runs, its scoring forward fails
    monitor = GenerationMonitor(PROMPTS, every_n_train_steps=2, adapter=FlakyScoring, context_length=64)
    run = trainer(tmp_path, [monitor], max_steps=2)
    with pytest.raises(ProbeError, match="scoring the probe's sample .* RuntimeError: flaky; set `log_metrics=False`"):
        run.fit(Module())
    assert run.global_step == 0


def test_a_failing_scoring_forward_in_a_round_loses_that_round_only(tmp_path, console):
    FlakyScoring.failures = []
    monitor, run, warned, _ = _fit(tmp_path, Module(), console, adapter=FlakyScoring, context_length=64)
    assert warned == []
    FlakyScoring.failures = [True]  # the next scoring forward fails, once
    monitor.last_round_step = None
    with pytest.warns(UserWarning, match="sampling at step 4 failed with RuntimeError: flaky"):
        monitor._maybe_run(run)
    samples = monitor.sample_now(run, step=6)
    assert monitor._plan.score and all("mean_logprob" in s.metrics for s in samples)  # still scored


def test_last_position_logits_are_not_scored_decided_by_their_shape(tmp_path, console):
    class LastOnly(GPT):
        def forward(self, idx):
            logits = super().forward(idx)
            return logits if self.training else logits[:, -1:]  # (B, 1, V): nanoGPT at inference

    monitor, run, warned, lines = _fit(tmp_path, Module(LastOnly()), console, context_length=64)
    assert warned == ["GenerationMonitor: samples are not scored (mean log-prob, reference loss): the model returns "
                      "logits for the last position only (nanoGPT-style); the other scalars are still logged"]
    assert sorted(_samples(run)) == [0, 2, 4]


# ------------------------------------------------------------------------------------------------ one plan, kept
def test_a_round_settles_nothing_again(tmp_path, console, monkeypatch):
    """The configuration is merged and validated once per run, at setup: no round or batch does it again."""
    import lightning_gen.decoding.config as config

    monitor, run, _, _ = _fit(tmp_path, Module(), console, batch_size=1, also_greedy=True)
    merges = []
    original = config.merge_config
    monkeypatch.setattr(config, "merge_config", lambda *a, **k: merges.append(1) or original(*a, **k))
    samples = monitor.sample_now(run, step=100)
    assert len(samples) == 2 and all(s.greedy is not None for s in samples) and merges == []


class WritesIntoItsBuffer(GPT):
    """Counts its eval forwards in a buffer, in place: a write the monitor must find, undo and say."""

    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, idx):
        if not self.training:
            self.seen += 1
        return super().forward(idx)


def test_a_buffer_written_in_place_while_sampling_is_put_back_and_named_once(tmp_path, console):
    module = Module(WritesIntoItsBuffer())
    monitor, run, warned, _ = _fit(tmp_path, module, console, context_length=64)
    assert warned == ["GenerationMonitor: sampling writes into the buffers ['seen'] of `pl_module.model`; their values "
                      "are put back after every round"]
    assert float(module.model.seen) == 0.0  # after the probe and every round
    monitor.sample_now(run, step=100)
    assert float(module.model.seen) == 0.0
