"""Adapters: every calling protocol gives the tokens the obvious hand-written loop gives.

Plain models are checked against a nanoGPT-style greedy loop; the KV-cache protocols (gpt-fast, litgpt,
and the real ``litgpt`` package) against re-forwarding the whole sequence through the same weights. The models
are in `tiny`; `compile` is tested in `test_compiled_decode`.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch
from tiny import (
    N_TOKENS,
    PROMPT,
    CumMeanLM,
    LitStyleLM,
    ReForward,
    build_litgpt,
    greedy_reference,
    kv_caches,
    seeded,
    tiny_gpt2,
    tiny_gpt_fast,
)
from torch import nn
from transformers import GPT2LMHeadModel
from transformers.modeling_outputs import CausalLMOutput

from lightning_gen import generate, generate_completions
from lightning_gen.decoding.adapters import (
    GptFastAdapter,
    HFAdapter,
    LitGPTAdapter,
    ModelAdapter,
    PlainAdapter,
    find_context_length,
    last_logits,
    resolve_adapter,
)


class OutputForm(nn.Module):
    """Wraps a (B, T, V) model and returns its logits in one of the shapes real models use."""

    def __init__(self, base: nn.Module, form: str) -> None:
        super().__init__()
        self.base, self.form = base, form

    def forward(self, ids: torch.Tensor):
        logits = self.base(ids)  # (B, T, V)
        if self.form == "(B,T,V)":
            return logits
        if self.form == "(B,1,V)":  # nanoGPT at inference
            return logits[:, [-1], :]
        if self.form == "(B,V)":
            return logits[:, -1]
        if self.form == "tuple":  # nanoGPT's (logits, loss)
            return logits, None
        if self.form == "dict":
            return {"loss": None, "logits": logits}
        if self.form == "ModelOutput":
            return CausalLMOutput(logits=logits)
        raise AssertionError(self.form)


FORMS = ["(B,T,V)", "(B,1,V)", "(B,V)", "tuple", "dict", "ModelOutput"]


# ---------------------------------------------------------------------------------------- plain models
def test_reference_is_not_trivial():
    # Guard: the greedy continuation must vary, or equality below would prove little.
    out = greedy_reference(CumMeanLM(), PROMPT, 12)
    assert all(len(set(row[5:].tolist())) >= 3 for row in out)


@pytest.mark.parametrize("form", FORMS)
def test_every_output_form_gives_reference_greedy_tokens(form):
    base = CumMeanLM()
    expected = greedy_reference(base, PROMPT, 12)
    out = generate(OutputForm(base, form), PROMPT, max_new_tokens=12)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("form", FORMS[1:])
def test_every_output_form_samples_like_full_logits(form):
    base = CumMeanLM()
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.8)
    expected = generate(OutputForm(base, "(B,T,V)"), PROMPT, generator=torch.Generator().manual_seed(3), **kw)
    out = generate(OutputForm(base, form), PROMPT, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(out, expected)


def test_last_logits_shapes_and_errors():
    logits = torch.randn(2, 5, 7)
    assert torch.equal(last_logits(logits), logits[:, -1])
    assert torch.equal(last_logits(logits[:, -1]), logits[:, -1])
    assert torch.equal(last_logits([logits, "aux"]), logits[:, -1])
    assert torch.equal(last_logits(CausalLMOutput(logits=logits)), logits[:, -1])
    with pytest.raises(TypeError, match="str"):
        last_logits({"logits": "nope"})
    with pytest.raises(ValueError, match=r"\(7,\)"):
        last_logits(torch.randn(7))


class _Advertised(CumMeanLM):
    """CumMeanLM that advertises its context the way one family of models does."""

    def __init__(self, how: str, size: int) -> None:
        super().__init__(block_size=size)
        if how == "block_size":
            self.block_size = size  # nanoGPT's config is on the model in many forks
        elif how == "max_seq_length":
            self.max_seq_length = size  # litgpt / gpt-fast
        elif how == "config.n_positions":
            self.config = SimpleNamespace(n_positions=size)  # GPT-2 style config
        else:
            raise AssertionError(how)


@pytest.mark.parametrize("how", ["block_size", "max_seq_length", "config.n_positions"])
def test_plain_model_is_cropped_to_its_discovered_context(how):
    model = _Advertised(how, 8)
    out = generate(model, PROMPT, max_new_tokens=10)  # 15 tokens: the model would raise without cropping
    assert out.shape == (2, 15)
    assert max(shape[1] for shape in model.batch_shapes) == 8
    assert torch.equal(out, greedy_reference(CumMeanLM(), PROMPT, 10, context=8))


def test_plain_model_without_context_sees_the_whole_sequence():
    model = CumMeanLM()
    out = generate(model, PROMPT, max_new_tokens=10)
    assert max(shape[1] for shape in model.batch_shapes) == 14  # the last forward sees prompt + 9 new tokens
    # Cropping would have changed the tokens (guards the test above against a context-blind model).
    assert not torch.equal(out, greedy_reference(CumMeanLM(), PROMPT, 10, context=8))


def test_explicit_context_length_wins_over_the_advertised_one():
    model = _Advertised("block_size", 8)
    out = generate(model, PROMPT, max_new_tokens=10, context_length=4)
    assert max(shape[1] for shape in model.batch_shapes) == 4
    assert torch.equal(out, greedy_reference(CumMeanLM(), PROMPT, 10, context=4))


def test_find_context_length_order_and_invalid_values():
    assert find_context_length(nn.Linear(2, 2)) is None
    model = nn.Linear(2, 2)
    model.block_size = True  # a flag, not a length
    model.config = SimpleNamespace(max_position_embeddings=0, n_positions=64)
    assert find_context_length(model) == 64
    model.max_seq_length = 16  # on the model beats the config
    assert find_context_length(model) == 16


# ---------------------------------------------------------------------------------------- KV-cache models
def test_gpt_fast_greedy_matches_reforward():
    model = tiny_gpt_fast(N_TOKENS)
    out = generate(model, PROMPT, max_new_tokens=12)
    expected = greedy_reference(ReForward(model), PROMPT, 12)
    assert len(set(expected[:, 5:].flatten().tolist())) >= 4
    assert torch.equal(out, expected)
    assert torch.equal(generate(ReForward(model), PROMPT, max_new_tokens=12), expected)


def test_gpt_fast_sampling_matches_reforward():
    model = tiny_gpt_fast(N_TOKENS)
    kw = dict(max_new_tokens=12, do_sample=True, top_p=0.9)
    out = generate(model, PROMPT, generator=torch.Generator().manual_seed(7), **kw)
    expected = generate(ReForward(model), PROMPT, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(out, expected)


def test_gpt_fast_second_call_may_be_longer_than_the_first():
    model = tiny_gpt_fast(N_TOKENS, block_size=32)
    generate(model, PROMPT, max_new_tokens=3)  # setup_caches(2, 8): model.max_seq_length is now 8
    out = generate(model, PROMPT, max_new_tokens=12)  # 17 <= block_size 32
    assert torch.equal(out, greedy_reference(ReForward(model), PROMPT, 12))


def test_gpt_fast_smaller_batch_after_larger_batch():
    model = tiny_gpt_fast(N_TOKENS)
    generate(model, PROMPT, max_new_tokens=4)  # caches for batch 2
    out = generate(model, PROMPT[:1], max_new_tokens=4)
    assert torch.equal(out, greedy_reference(ReForward(model), PROMPT[:1], 4))


def test_gpt_fast_generate_completions_with_mixed_lengths():
    model = tiny_gpt_fast(N_TOKENS)
    prompts = [[3, 14, 15, 9, 2], [6, 5, 3, 5, 8], [7, 7, 1]]  # groups: two of length 5, then one of 3
    out = generate_completions(model, prompts, max_new_tokens=4)
    assert out == [greedy_reference(ReForward(model), torch.tensor([p]), 4)[0, len(p):].tolist() for p in prompts]


def test_litgpt_style_greedy_matches_plain_and_clears_cache():
    model = LitStyleLM()
    out = generate(model, PROMPT, max_new_tokens=12)
    assert model.allocated == [(2, 17)] and model.cleared == 1
    assert kv_caches(model) == [None, None] and model.mask_cache is None
    expected = greedy_reference(model, PROMPT, 12)  # forward(idx) without input_pos: no cache
    assert len(set(expected[:, 5:].flatten().tolist())) >= 4
    assert torch.equal(out, expected)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=12, adapter="plain"), expected)


def test_litgpt_style_sampling_matches_plain():
    model = LitStyleLM()
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.3, top_k=10)
    out = generate(model, PROMPT, generator=torch.Generator().manual_seed(5), **kw)
    expected = generate(model, PROMPT, generator=torch.Generator().manual_seed(5), adapter="plain", **kw)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("fail_on_call", [1, 4], ids=["prefill", "decode"])
def test_litgpt_style_cache_cleared_when_forward_raises(fail_on_call):
    model = LitStyleLM(fail_on_call=fail_on_call)
    with pytest.raises(RuntimeError, match="out of memory"):
        generate(model, PROMPT, max_new_tokens=12)
    assert model.cleared == 1
    assert kv_caches(model) == [None, None] and model.mask_cache is None


def test_use_cache_false_calls_a_cache_model_the_plain_way():
    model = LitStyleLM()
    out = generate(model, PROMPT, max_new_tokens=6, use_cache=False)
    assert model.allocated == [] and model.cleared == 0
    assert torch.equal(out, greedy_reference(model, PROMPT, 6))


# ---------------------------------------------------------------------------------------- real litgpt
@pytest.fixture(scope="module")
def litgpt_model():
    pytest.importorskip("litgpt.model")
    return build_litgpt()


def _litgpt_cache_is_clear(model) -> bool:
    return model.mask_cache is None and all(block.attn.kv_cache is None for block in model.transformer.h)


def test_real_litgpt_is_detected_and_greedy_matches_plain(litgpt_model):
    assert isinstance(resolve_adapter(litgpt_model), LitGPTAdapter)
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    out = generate(litgpt_model, ids, max_new_tokens=12)
    assert _litgpt_cache_is_clear(litgpt_model)
    expected = generate(litgpt_model, ids, max_new_tokens=12, adapter="plain")
    assert len(set(expected[:, 4:].flatten().tolist())) >= 4
    assert torch.equal(out, expected)
    assert torch.equal(out, greedy_reference(litgpt_model, ids, 12))


def test_real_litgpt_sampling_matches_plain(litgpt_model):
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    for seed in range(3):
        kw = dict(max_new_tokens=16, do_sample=True, top_p=0.95)
        out = generate(litgpt_model, ids, generator=torch.Generator().manual_seed(seed), **kw)
        expected = generate(litgpt_model, ids, generator=torch.Generator().manual_seed(seed), adapter="plain", **kw)
        assert torch.equal(out, expected)
    assert _litgpt_cache_is_clear(litgpt_model)


def test_real_litgpt_cache_cleared_when_forward_raises(litgpt_model):
    calls = []

    def explode_on_third_call(module, args, output):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in decode")

    handle = litgpt_model.transformer.h[0].register_forward_hook(explode_on_third_call)
    try:
        with pytest.raises(RuntimeError, match="boom in decode"):
            generate(litgpt_model, torch.tensor([[3, 4, 5]]), max_new_tokens=8)
    finally:
        handle.remove()
    assert _litgpt_cache_is_clear(litgpt_model)


def test_real_litgpt_context_check_uses_max_seq_length(litgpt_model):
    with pytest.raises(ValueError, match="context length 32"):
        generate(litgpt_model, torch.tensor([[3, 4, 5]]), max_new_tokens=30)
    assert _litgpt_cache_is_clear(litgpt_model)


# ---------------------------------------------------------------------------------------- detection and names
class _OnlySetupCaches(CumMeanLM):
    def setup_caches(self, max_batch_size, max_seq_length):  # gpt-fast's protocol, nothing else
        pass


@pytest.mark.parametrize(("model", "use_cache", "expected"), [
    (CumMeanLM(), True, PlainAdapter),
    (LitStyleLM(), True, LitGPTAdapter),
    (tiny_gpt_fast(N_TOKENS), True, GptFastAdapter),
    (_OnlySetupCaches(), True, GptFastAdapter),
    (tiny_gpt2(N_TOKENS), True, HFAdapter),
    (LitStyleLM(), False, PlainAdapter),
    (tiny_gpt_fast(N_TOKENS), False, GptFastAdapter),  # its forward needs the caches: it recomputes instead
    (tiny_gpt2(N_TOKENS), False, HFAdapter),  # transformers models handle use_cache=False themselves
], ids=["plain", "litgpt", "gpt-fast", "setup_caches-only", "hf", "litgpt-no-cache", "gpt-fast-no-cache",
        "hf-no-cache"])
def test_auto_detection(model, use_cache, expected):
    runner = resolve_adapter(model, use_cache=use_cache)
    assert type(runner) is expected and runner.model is model
    assert type(resolve_adapter(model, "auto", use_cache=use_cache)) is expected


def test_gpt_fast_without_cache_recomputes_the_whole_sequence_and_matches_cached():
    model = tiny_gpt_fast(N_TOKENS)
    runner = resolve_adapter(model, use_cache=False)
    assert runner.recompute and not runner.can_compile
    out = generate(model, PROMPT, max_new_tokens=10, use_cache=False)
    assert torch.equal(out, generate(model, PROMPT, max_new_tokens=10))
    assert torch.equal(out, greedy_reference(ReForward(model), PROMPT, 10))


def test_hf_adapter_carries_use_cache():
    assert resolve_adapter(tiny_gpt2(N_TOKENS), use_cache=False).use_cache is False


class _PastKeyValuesGPT2(GPT2LMHeadModel):
    """A transformers model whose forward calls its cache ``past_key_values``, as remote code written for older
    releases does (transformers itself renamed it ``cache`` during 5.x)."""

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, position_ids=None, use_cache=None,
                return_dict=None, logits_to_keep=0, **kwargs):  # kwargs: what a release adds (cache_position)
        self.calls.append((input_ids.shape[1], past_key_values is not None))
        cache_key = "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=use_cache, logits_to_keep=logits_to_keep, **{cache_key: past_key_values})
        return {"logits": out.logits, "past_key_values": out[cache_key]}


def test_hf_cache_goes_by_the_name_the_forward_takes():
    base = tiny_gpt2(N_TOKENS)
    model = _PastKeyValuesGPT2(base.config).eval()
    model.load_state_dict(base.state_dict())
    model.calls = []
    ids = torch.randint(0, N_TOKENS, (2, 5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(generate(model, ids, max_new_tokens=6), generate(base, ids, max_new_tokens=6))
    assert model.calls == [(5, True)] + [(1, True)] * 5  # a prefill into a new cache, then one token per step


def test_litgpt_needs_both_cache_methods():
    model = CumMeanLM()
    model.set_kv_cache = lambda *a, **k: None  # no clear_kv_cache: not litgpt
    assert type(resolve_adapter(model)) is PlainAdapter


@pytest.mark.parametrize(("name", "expected"), [
    ("plain", PlainAdapter), ("litgpt", LitGPTAdapter), ("gpt-fast", GptFastAdapter), ("hf", HFAdapter),
])
def test_adapter_by_name_and_by_class(name, expected):
    model = LitStyleLM()
    assert type(resolve_adapter(model, name)) is expected
    assert type(resolve_adapter(model, expected, context_length=7)) is expected
    assert resolve_adapter(model, expected, context_length=7).context_length == 7


def test_adapter_instance_is_used_as_given():
    runner = PlainAdapter(CumMeanLM())
    assert resolve_adapter(LitStyleLM(), runner) is runner


def test_unknown_adapter_name_lists_the_choices():
    with pytest.raises(ValueError, match="'vllm'") as err:
        generate(CumMeanLM(), PROMPT, max_new_tokens=2, adapter="vllm")
    for choice in ("auto", "plain", "litgpt", "gpt-fast", "hf"):
        assert repr(choice) in str(err.value)


def test_adapter_of_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="adapter.*int"):
        generate(CumMeanLM(), PROMPT, max_new_tokens=2, adapter=3)


def test_forced_plain_adapter_on_a_cache_model_skips_the_cache():
    model = LitStyleLM()
    generate(model, PROMPT, max_new_tokens=3, adapter="plain")
    assert model.allocated == [] and model.cleared == 0


# ---------------------------------------------------------------------------------------- user adapters
class PagedLM(LitStyleLM):
    """A model with its own cache protocol: ``allocate``/``free`` and ``forward(idx, start)``."""

    def allocate(self, batch: int, length: int) -> None:
        self.set_kv_cache(batch, length)

    def free(self) -> None:
        self.clear_kv_cache()

    def step(self, idx: torch.Tensor, start: int) -> torch.Tensor:
        return self(idx, torch.arange(start, start + idx.shape[1]))


class PagedAdapter(ModelAdapter):
    closed = 0

    def prefill(self, input_ids, attention_mask, *, max_length):
        self.model.allocate(input_ids.shape[0], max_length)
        return last_logits(self.model.step(input_ids, 0))  # (B, V)

    def decode(self, input_ids, attention_mask):
        return last_logits(self.model.step(input_ids[:, -1:], input_ids.shape[1] - 1))

    def close(self):
        self.closed += 1
        self.model.free()


def test_user_adapter_generates_like_plain_and_is_closed():
    model = PagedLM()
    runner = PagedAdapter(model)
    out = generate(model, PROMPT, max_new_tokens=10, adapter=runner)
    assert runner.closed == 1 and model.cleared == 1 and model.allocated == [(2, 15)]
    assert torch.equal(out, greedy_reference(model, PROMPT, 10))


def test_user_adapter_is_closed_after_an_error():
    model = PagedLM(fail_on_call=3)
    runner = PagedAdapter(model)
    with pytest.raises(RuntimeError):
        generate(model, PROMPT, max_new_tokens=10, adapter=runner)
    assert runner.closed == 1 and kv_caches(model) == [None, None]


def test_user_adapter_class_is_instantiated_with_the_model():
    model = PagedLM()
    out = generate(model, PROMPT, max_new_tokens=4, adapter=PagedAdapter)
    assert model.cleared == 1
    assert torch.equal(out, greedy_reference(model, PROMPT, 4))


# ---------------------------------------------------------------------------------------- transformers
def test_hf_cached_and_uncached_agree():
    model = tiny_gpt2(N_TOKENS)
    with seeded(1):
        for p in model.parameters():
            nn.init.normal_(p, std=0.5)
    cached = generate(model, PROMPT, max_new_tokens=10)
    uncached = generate(model, PROMPT, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, greedy_reference(lambda ids: model(ids).logits, PROMPT, 10))


def test_kept_state_puts_back_every_attribute_a_call_rebinds_or_adds():
    from lightning_gen.decoding.adapters import kept_state

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    first, inner, last = model
    mask, weight, settings = torch.ones(2), inner.weight, {"a": 1}
    first.mask = mask
    inner.max_batch_size, inner.note, inner.cache_enabled, inner.settings = 4, "kept", False, settings
    last.register_buffer("table", torch.zeros(1), persistent=False)
    with kept_state(model):
        first.mask = torch.zeros(3)  # only rebound: no attribute appears on this module
        inner.cache = torch.zeros(5)  # appeared
        inner.max_batch_size, inner.note, inner.cache_enabled = 8, "changed", True  # ints, strings, flags
        inner.settings = {"a": 2}  # any object
        inner.decoder_max_cache_seq_len = 64  # a plain value that appeared
        inner.register_buffer("kv", torch.zeros(2))  # a buffer that appeared
        last.table = torch.ones(1)  # a buffer rebound
    assert first.mask is mask and not hasattr(inner, "cache") and not hasattr(inner, "decoder_max_cache_seq_len")
    assert (inner.max_batch_size, inner.note, inner.cache_enabled) == (4, "kept", False)
    assert inner.settings is settings and inner.weight is weight
    assert sorted(model.state_dict()) == [f"{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    assert float(last.table) == 0.0 and last._non_persistent_buffers_set == {"table"}


def test_watched_state_puts_back_values_written_into_buffers_and_names_them():
    from lightning_gen.decoding.adapters import watched_state

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[0].register_buffer("cache", torch.zeros(3))
    with watched_state(model) as changes:
        model[0].cache[1] = 5.0  # written in place: the same tensor, new values
        model[0].flag = True
    assert changes.written == ["0.cache"] and model[0].cache.tolist() == [0.0, 0.0, 0.0]
    assert not hasattr(model[0], "flag")
