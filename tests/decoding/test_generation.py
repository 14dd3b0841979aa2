"""`generate`: input checks, stopping, padding after EOS, vocabulary cuts and side effects on the model.

Most tests use `Script`, a bigram lookup table whose next token is fixed, so expected outputs are written out
token by token.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from tiny import seeded
from torch import nn
from transformers import GenerationConfig

from lightning_gen import generate

V = 16
# NEXT[t] follows t: 2 → 3 → 4 → 5 → 1 (EOS) → 6 ..., while 6 → 7 → ... → 13 → 7 loops without EOS.
NEXT = [(t + 1) % V for t in range(V)]
NEXT[5], NEXT[1], NEXT[13] = 1, 6, 7
PROMPT = torch.tensor([[2, 3], [6, 7]])  # row 0 reaches EOS after 3 new tokens, row 1 never does


class Script(nn.Module):
    """Bigram lookup: logits `(B, T, V)` with a margin of 10 for ``NEXT[token]`` at every position."""

    vocab_size = V

    def __init__(self, table: list[int] = NEXT) -> None:
        super().__init__()
        self.register_buffer("table", 10.0 * F.one_hot(torch.tensor(table), V).float())
        self.forwards: list[int] = []  # a list, filled in place: `generate` puts rebound attributes back

    @property
    def calls(self) -> int:
        return len(self.forwards)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.forwards.append(ids.shape[1])
        return self.table[ids]  # (B, T, V)


class Noisy(nn.Module):
    """A small random plain LM for sampling tests: embedding → MLP → logits `(B, T, V)`."""

    vocab_size = V

    def __init__(self) -> None:
        super().__init__()
        with seeded(0):
            self.emb = nn.Embedding(V, 8)
            self.head = nn.Linear(8, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.emb(ids)))  # (B, T, V)


def rows(*values: list[int]) -> torch.Tensor:
    return torch.tensor(list(values))


# ---------------------------------------------------------------------------------------- bad inputs
BAD_CONFIG = [
    # (kwargs, exception, fragments the message must contain: the argument and the bad value)
    ({"top_kk": 5}, ValueError, ["'top_kk'", "did you mean 'top_k'"]),
    ({"max_new_tokens": 0}, ValueError, ["`max_new_tokens`", "is 0"]),
    ({"do_sample": True, "temperature": -1.0}, ValueError, ["`temperature`", "got -1.0"]),
    ({"do_sample": True, "temperature": 0.0}, ValueError, ["`temperature`", "got 0.0"]),
    ({"temperature": 0}, ValueError, ["`temperature`", "got 0"]),  # checked even when greedy
    ({"do_sample": True, "top_p": 1.5}, ValueError, ["`top_p`", "(0, 1]", "got 1.5"]),
    ({"do_sample": True, "top_p": 0.0}, ValueError, ["`top_p`", "got 0.0"]),
    ({"do_sample": True, "top_k": -1}, ValueError, ["`top_k`", "got -1"]),
    ({"do_sample": True, "min_p": 2}, ValueError, ["`min_p`", "got 2"]),
    ({"do_sample": True, "typical_p": 0}, ValueError, ["`typical_p`", "got 0"]),
    ({"repetition_penalty": 0.0}, ValueError, ["`repetition_penalty`", "got 0.0"]),
    ({"num_return_sequences": 0}, ValueError, ["`num_return_sequences`", "got 0"]),
    ({"num_return_sequences": 2}, ValueError, ["`num_return_sequences`", "got 2"]),  # greedy cannot return 2
    ({"max_time": -1.0}, ValueError, ["`max_time`", "got -1.0"]),
    ({"eos_token_id": -3}, ValueError, ["`eos_token_id`", "got -3"]),
    ({"num_beams": 2}, NotImplementedError, ["num_beams=2"]),
    ({"penalty_alpha": 0.6, "top_k": 4}, NotImplementedError, ["contrastive"]),
    ({"stop_strings": "END"}, ValueError, ["`stop_strings`='END'", "tokenizer"]),
    ({"max_new_tokens": None, "max_length": 2}, ValueError, ["`max_length`", "got 2"]),  # no room after the prompt
    ({"vocab_size": 0}, ValueError, ["`vocab_size`", "got 0"]),
]


@pytest.mark.parametrize(("kwargs", "error", "fragments"), BAD_CONFIG,
                         ids=[",".join(f"{k}={v!r}" for k, v in kw.items()) for kw, _, _ in BAD_CONFIG])
def test_bad_configuration_is_refused_with_a_message_naming_it(kwargs, error, fragments):
    model = Script()
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(error) as err:
        generate(model, PROMPT, **kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert model.calls == 0  # refused before running the model


BAD_IDS = [
    (torch.tensor([2, 3]), ValueError, ["input_ids", "2-D", "(2,)"]),
    (torch.tensor([[[2, 3]]]), ValueError, ["input_ids", "2-D", "(1, 1, 2)"]),
    (torch.zeros((0, 2), dtype=torch.long), ValueError, ["input_ids", "(0, 2)"]),
    (torch.tensor([[2.0, 3.0]]), TypeError, ["input_ids", "float32"]),
    ([[2, 3]], TypeError, ["input_ids", "list"]),
    (torch.tensor([[2, 16]]), ValueError, ["input_ids", "[0, 16)", "16]"]),
    (torch.tensor([[-1, 3]]), ValueError, ["input_ids", "[-1, 3]"]),
]


@pytest.mark.parametrize(("input_ids", "error", "fragments"), BAD_IDS,
                         ids=["1-D", "3-D", "empty", "float", "list", "id>=vocab", "negative"])
def test_bad_input_ids_are_refused_with_a_message_naming_them(input_ids, error, fragments):
    model = Script()
    with pytest.raises(error) as err:
        generate(model, input_ids, max_new_tokens=3)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert model.calls == 0


def test_explicit_vocab_size_bounds_the_input_ids():
    with pytest.raises(ValueError, match=r"input_ids.*\[0, 8\)"):
        generate(Script(), torch.tensor([[2, 9]]), max_new_tokens=1, vocab_size=8)


class CacheScript(Script):
    """`Script` behind litgpt's KV-cache protocol, with room for 16 tokens."""

    max_seq_length = 16

    def __init__(self) -> None:
        super().__init__()
        self.allocated: list[tuple[int, int]] = []

    def set_kv_cache(self, batch_size, max_seq_length=None, device=None, dtype=None):
        self.allocated.append((batch_size, max_seq_length))

    def clear_kv_cache(self):
        pass

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(idx)


def test_cache_model_refuses_prompt_plus_new_tokens_beyond_its_context():
    model = CacheScript()
    with pytest.raises(ValueError) as err:
        generate(model, torch.tensor([[2] * 10]), max_new_tokens=7)
    assert "17" in str(err.value) and "16" in str(err.value) and "max_new_tokens" in str(err.value)
    assert model.allocated == [] and model.calls == 0
    # Exactly full is fine, and a plain model crops instead of refusing.
    assert generate(model, torch.tensor([[2] * 10]), max_new_tokens=6).shape == (1, 16)
    assert generate(model, torch.tensor([[2] * 10]), max_new_tokens=7, adapter="plain").shape == (1, 17)


def test_attention_mask_with_padding_is_refused_for_a_plain_model():
    with pytest.raises(ValueError, match="attention_mask.*generate_completions"):
        generate(Script(), PROMPT, attention_mask=torch.tensor([[0, 1], [1, 1]]), max_new_tokens=2)


def test_attention_mask_without_padding_is_accepted_for_a_plain_model():
    out = generate(Script(), PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=2)
    assert torch.equal(out, rows([2, 3, 4, 5], [6, 7, 8, 9]))


@pytest.mark.parametrize("mask", [torch.ones(2, 3, dtype=torch.long), [[1, 1], [1, 1]]], ids=["shape", "list"])
def test_attention_mask_of_the_wrong_shape_or_type_is_refused(mask):
    with pytest.raises(ValueError, match=r"attention_mask.*\(2, 2\)"):
        generate(Script(), PROMPT, attention_mask=mask, max_new_tokens=2)


@pytest.mark.parametrize("config", [{"max_new_tokens": 3}, "greedy", 3])
def test_generation_config_of_the_wrong_type_is_refused(config):
    with pytest.raises(TypeError, match=f"generation_config.*{type(config).__name__}"):
        generate(Script(), PROMPT, config)


# ---------------------------------------------------------------------------------------- configuration
def test_keyword_arguments_override_the_generation_config_which_is_not_modified():
    config = GenerationConfig(max_new_tokens=2, eos_token_id=1, pad_token_id=0)
    assert generate(Script(), PROMPT, config).shape == (2, 4)
    assert generate(Script(), PROMPT, config, max_new_tokens=5).shape == (2, 7)
    assert config.max_new_tokens == 2 and config.max_length is None


def test_default_length_is_hf_default_of_20_new_tokens():
    assert generate(Script(), PROMPT).shape == (2, 22)


def test_max_length_counts_the_prompt():
    out = generate(Script(), PROMPT, max_length=5)
    assert torch.equal(out, rows([2, 3, 4, 5, 1], [6, 7, 8, 9, 10]))


# ---------------------------------------------------------------------------------------- stopping
def test_eos_ends_rows_independently_and_pads_them():
    out = generate(Script(), PROMPT, max_new_tokens=6, eos_token_id=1, pad_token_id=0)
    assert torch.equal(out, rows([2, 3, 4, 5, 1, 0, 0, 0], [6, 7, 8, 9, 10, 11, 12, 13]))


def test_without_pad_token_finished_rows_are_filled_with_the_first_eos():
    out = generate(Script(), PROMPT, max_new_tokens=6, eos_token_id=[14, 1])
    assert torch.equal(out, rows([2, 3, 4, 5, 1, 14, 14, 14], [6, 7, 8, 9, 10, 11, 12, 13]))


def test_without_eos_nothing_stops_or_pads():
    out = generate(Script(), PROMPT, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(out, rows([2, 3, 4, 5, 1, 6, 7, 8], [6, 7, 8, 9, 10, 11, 12, 13]))


def test_several_eos_ids_and_early_end_when_all_rows_finish():
    model = Script()
    out = generate(model, PROMPT, max_new_tokens=10, eos_token_id=[1, 10], pad_token_id=0)
    assert torch.equal(out, rows([2, 3, 4, 5, 1], [6, 7, 8, 9, 10]))  # both end at step 3: no more steps
    assert model.calls == 3


def test_eos_in_the_prompt_does_not_stop_generation():
    out = generate(Script(), torch.tensor([[1, 2]]), max_new_tokens=3, eos_token_id=1, pad_token_id=0)
    assert torch.equal(out, rows([1, 2, 3, 4, 5]))


def test_all_finished_keeps_calling_the_model_until_every_process_is_done():
    seen = []

    def all_finished(done: bool) -> bool:  # another process needs two more steps after this one is done
        seen.append(done)
        return done and seen.count(True) == 3

    model = Script()
    out = generate(model, PROMPT, max_new_tokens=10, eos_token_id=[1, 10], pad_token_id=0, all_finished=all_finished)
    assert torch.equal(out, rows([2, 3, 4, 5, 1], [6, 7, 8, 9, 10]))  # the extra steps add no tokens
    assert seen == [False, False, True, True, True]
    assert model.calls == 5


class Sleepy(Script):
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return super().forward(ids)


def test_max_time_stops_long_generation_early():
    model = Sleepy()
    out = generate(model, PROMPT, max_new_tokens=1000, max_time=0.2)
    assert out.shape[0] == 2 and 3 <= out.shape[1] < 2 + 100
    assert model.calls == out.shape[1] - 2


def test_num_return_sequences_repeats_each_prompt_in_order():
    out = generate(Noisy(), PROMPT, max_new_tokens=8, do_sample=True, num_return_sequences=3,
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 10)
    assert torch.equal(out[:, :2], PROMPT.repeat_interleave(3, dim=0))
    assert len({tuple(r) for r in out[:3, 2:].tolist()}) > 1  # copies sample independently


# ---------------------------------------------------------------------------------------- sampling and vocab
def test_sampling_is_reproducible_with_a_seeded_generator():
    def sample(seed):
        generator = torch.Generator().manual_seed(seed)
        return generate(Noisy(), PROMPT, max_new_tokens=12, do_sample=True, generator=generator)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


class PaddedVocab(nn.Module):
    """64 logits for a 50-token vocabulary; the padded ids 50..63 always win, as an untrained pad row may."""

    def __init__(self) -> None:
        super().__init__()
        table = torch.full((64, 64), -5.0)
        table[:, 50:] = 20.0 + torch.arange(14.0)
        table[torch.arange(64), (torch.arange(64) * 7 + 3) % 50] = 5.0  # best real token
        table[torch.arange(64), (torch.arange(64) * 11 + 1) % 50] = 4.0  # second best: sampling has a choice
        self.register_buffer("table", table)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]  # (B, T, 64)


def test_vocab_size_cuts_padded_logits():
    model, ids = PaddedVocab(), torch.tensor([[3, 4], [10, 20]])
    assert (generate(model, ids, max_new_tokens=6)[:, 2:] >= 50).all()  # guard: padding wins without the cut
    out = generate(model, ids, max_new_tokens=6, vocab_size=50)
    expected = ids
    for _ in range(6):
        expected = torch.cat([expected, ((expected[:, -1:] * 7 + 3) % 50)], dim=1)
    assert torch.equal(out, expected)
    sampled = generate(model, ids, max_new_tokens=20, vocab_size=50, do_sample=True,
                       generator=torch.Generator().manual_seed(0))
    assert sampled[:, 2:].max() < 50


class LitGPTShapedVocab(PaddedVocab):
    """litgpt's convention: ``config.vocab_size`` is the tokenizer's, ``padded_vocab_size`` the logits' width."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(vocab_size=50, padded_vocab_size=64)


def test_inferred_vocab_size_bounds_the_prompt():
    with pytest.raises(ValueError, match=r"input_ids.*\[0, 50\)"):
        generate(LitGPTShapedVocab(), torch.tensor([[3, 55]]), max_new_tokens=1)


def test_generated_ids_stay_inside_the_inferred_vocab():
    model = LitGPTShapedVocab()
    out = generate(model, torch.tensor([[3, 4]]), max_new_tokens=4)
    assert out.max() < 50
    generate(model, out, max_new_tokens=1)  # its own output is a valid prompt


# ---------------------------------------------------------------------------------------- side effects
def test_sampling_with_a_generator_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    generate(Noisy(), PROMPT, max_new_tokens=12, do_sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_sampling_without_a_generator_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    generate(Noisy(), PROMPT, max_new_tokens=12, do_sample=True)
    assert torch.equal(torch.get_rng_state(), state)


class Probe(nn.Module):
    """Records, at each forward, the train flags of itself and its children and whether grad is enabled."""

    vocab_size = V

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.frozen = nn.Linear(V, V)
        self.emb = nn.Embedding(V, V)
        self.fail = fail
        self.seen: list[tuple[bool, bool, bool, bool, bool]] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, self.drop.training, self.frozen.training, torch.is_grad_enabled(),
                          torch.is_inference_mode_enabled()))
        if self.fail:
            raise RuntimeError("forward failed")
        return self.frozen(self.drop(self.emb(ids)))  # (B, T, V)


def _train_with_one_child_in_eval(model: nn.Module) -> nn.Module:
    model.train()
    model.frozen.eval()
    return model


def test_model_runs_in_eval_without_grad_and_modes_are_restored():
    model = _train_with_one_child_in_eval(Probe())
    out = generate(model, PROMPT, max_new_tokens=4, do_sample=True, generator=torch.Generator().manual_seed(0))
    assert model.seen and all(s == (False, False, False, False, False) for s in model.seen)
    assert (model.training, model.drop.training, model.emb.training, model.frozen.training) == (True, True, True, False)
    assert torch.is_grad_enabled()
    assert not out.is_inference() and not out.requires_grad
    out[0, 0] = 1  # a normal tensor: writable outside inference mode


def test_modes_are_restored_when_forward_raises():
    model = _train_with_one_child_in_eval(Probe(fail=True))
    with pytest.raises(RuntimeError, match="forward failed"):
        generate(model, PROMPT, max_new_tokens=4)
    assert (model.training, model.drop.training, model.emb.training, model.frozen.training) == (True, True, True, False)
    assert torch.is_grad_enabled()


def test_model_in_eval_stays_in_eval():
    model = Probe().eval()
    generate(model, PROMPT, max_new_tokens=2)
    assert not any(m.training for m in model.modules())


def test_output_is_on_the_prompt_device_and_long():
    out = generate(Script(), PROMPT.int(), max_new_tokens=2)
    assert out.dtype == torch.long and out.device == PROMPT.device
    assert torch.equal(out, rows([2, 3, 4, 5], [6, 7, 8, 9]))


def test_nan_logits_in_greedy_decoding_raise_instead_of_picking_a_token():
    class NanLM(torch.nn.Module):
        def forward(self, ids):
            return torch.full((ids.shape[0], ids.shape[1], 8), float("nan"))

    with pytest.raises(FloatingPointError, match="NaN"):
        generate(NanLM(), torch.tensor([[1, 2]]), max_new_tokens=3)
