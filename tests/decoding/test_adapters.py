"""Adapters: every calling protocol gives the tokens the obvious hand-written loop gives.

Plain models are checked against a nanoGPT-style greedy loop; the KV-cache protocols (gpt-fast, litgpt,
and the real ``litgpt`` package) against re-forwarding the whole sequence through the same weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel
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

VOCAB = 32


PROMPT = torch.tensor([[3, 14, 15, 9, 2], [6, 5, 3, 5, 8]])  # (B=2, T=5)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build weights from ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def greedy_reference(model: nn.Module, ids: torch.Tensor, steps: int, context: int | None = None) -> torch.Tensor:
    """nanoGPT's ``generate`` loop with argmax: crop to the context, take the last logits, append."""
    with torch.no_grad():
        for _ in range(steps):
            window = ids if context is None else ids[:, -context:]
            logits = model(window)[:, -1]  # (B, V)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


class CumMeanLM(nn.Module):
    """Each position sees the mean of all embeddings so far plus its own: the whole context matters.

    ``block_size`` makes it refuse longer inputs, like nanoGPT's assertion; ``seen`` records input lengths.
    """

    def __init__(self, seed: int = 1, block_size: int | None = None) -> None:
        super().__init__()
        with seeded(seed):
            self.emb = nn.Embedding(VOCAB, 16)
            self.head = nn.Linear(16, VOCAB)
            nn.init.normal_(self.emb.weight, std=2.0)
        with seeded(seed + 100):
            self.mix = nn.Linear(16, 16)
            nn.init.normal_(self.mix.weight, std=0.5)
        self.limit = block_size
        self.seen: list[int] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.limit is not None and ids.shape[1] > self.limit:
            raise ValueError(f"got {ids.shape[1]} tokens, block size is {self.limit}")
        self.seen.append(ids.shape[1])
        x = self.emb(ids)  # (B, T, C)
        mean = x.cumsum(1) / torch.arange(1, ids.shape[1] + 1).view(1, -1, 1)
        return self.head(torch.tanh(x + self.mix(mean)))  # (B, T, V)


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
    assert max(model.seen) == 8
    assert torch.equal(out, greedy_reference(CumMeanLM(), PROMPT, 10, context=8))


def test_plain_model_without_context_sees_the_whole_sequence():
    model = CumMeanLM()
    out = generate(model, PROMPT, max_new_tokens=10)
    assert max(model.seen) == 14  # the last forward sees prompt + 9 new tokens
    # Cropping would have changed the tokens (guards the test above against a context-blind model).
    assert not torch.equal(out, greedy_reference(CumMeanLM(), PROMPT, 10, context=8))


def test_explicit_context_length_wins_over_the_advertised_one():
    model = _Advertised("block_size", 8)
    out = generate(model, PROMPT, max_new_tokens=10, context_length=4)
    assert max(model.seen) == 4
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
def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


class KVCache(nn.Module):
    """gpt-fast's KVCache: preallocated (B, H, S, D) buffers written at ``input_pos``."""

    def __init__(self, max_batch_size: int, max_seq_length: int, n_heads: int, head_dim: int) -> None:
        super().__init__()
        shape = (max_batch_size, n_heads, max_seq_length, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape))
        self.register_buffer("v_cache", torch.zeros(shape))

    def update(self, input_pos: torch.Tensor, k_val: torch.Tensor, v_val: torch.Tensor):
        assert input_pos.shape[0] == k_val.shape[2]
        self.k_cache[:, :, input_pos] = k_val
        self.v_cache[:, :, input_pos] = v_val
        return self.k_cache, self.v_cache


class Block(nn.Module):
    """Pre-norm causal self-attention + MLP; attends to its KV cache when it has one."""

    def __init__(self, dim: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, input_pos: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, H, S, D)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class _TinyTransformer(nn.Module):
    def __init__(self, block_size: int, seed: int) -> None:
        super().__init__()
        with seeded(seed):
            self.tok = nn.Embedding(VOCAB, 16)
            self.pos = nn.Embedding(block_size, 16)
            self.blocks = nn.ModuleList(Block(16, 2) for _ in range(2))
            self.ln_f = nn.LayerNorm(16)
            self.head = nn.Linear(16, VOCAB)
            # Strong embeddings and head, weak blocks: greedy output varies with the input and sampling is
            # far from uniform, so a wrong position or a stale cache entry changes the tokens.
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=1.0 if name.startswith(("tok", "pos", "head")) else 0.2)

    def _logits(self, idx: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x, mask, pos)
        return self.head(self.ln_f(x))  # (B, T, V)


class GptFastLM(_TinyTransformer):
    """gpt-fast's ``Transformer`` protocol, copied faithfully: caches are set up once and reused if big enough,
    ``max_seq_length`` is rounded up to a multiple of 8, and ``forward(idx, input_pos)`` needs the caches."""

    def __init__(self, block_size: int = 32, seed: int = 0) -> None:
        super().__init__(block_size, seed)
        self.config = SimpleNamespace(block_size=block_size, vocab_size=VOCAB)
        self.max_batch_size = -1
        self.max_seq_length = -1
        self.causal_mask: torch.Tensor | None = None

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        if self.max_seq_length >= max_seq_length and self.max_batch_size >= max_batch_size:
            return
        max_seq_length = find_multiple(max_seq_length, 8)
        self.max_seq_length = max_seq_length
        self.max_batch_size = max_batch_size
        for block in self.blocks:
            block.kv_cache = KVCache(max_batch_size, max_seq_length, block.n_head, 16 // block.n_head)
        self.causal_mask = torch.tril(torch.ones(max_seq_length, max_seq_length, dtype=torch.bool))

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        assert self.causal_mask is not None, "Caches must be initialized first"
        mask = self.causal_mask[None, None, input_pos]  # (1, 1, T, S)
        return self._logits(idx, input_pos, mask)


class ReForward(nn.Module):
    """A plain view of a gpt-fast model: fresh caches and the whole sequence on every call."""

    def __init__(self, inner: GptFastLM) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.inner.max_seq_length = -1  # force a fresh, empty cache
        self.inner.setup_caches(ids.shape[0], ids.shape[1])
        return self.inner(ids, torch.arange(ids.shape[1]))


class LitStyleLM(_TinyTransformer):
    """litgpt's ``GPT`` protocol: ``set_kv_cache``/``clear_kv_cache``, ``forward(idx, input_pos=None)``
    (no cache without ``input_pos``), ``max_seq_length`` and ``config.vocab_size``.

    ``fail_on_call`` makes the n-th forward raise, as an OOM halfway through decoding would.
    """

    def __init__(self, block_size: int = 32, seed: int = 0, fail_on_call: int | None = None) -> None:
        super().__init__(block_size, seed)
        self.config = SimpleNamespace(block_size=block_size, vocab_size=VOCAB)
        self.max_seq_length = block_size
        self.mask_cache: torch.Tensor | None = None
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.cleared = 0
        self.allocated: list[tuple[int, int]] = []

    def set_kv_cache(self, batch_size: int, max_seq_length: int | None = None, device=None, dtype=None) -> None:
        max_seq_length = max_seq_length or self.max_seq_length
        self.allocated.append((batch_size, max_seq_length))
        for block in self.blocks:
            block.kv_cache = KVCache(batch_size, max_seq_length, block.n_head, 16 // block.n_head).to(device)
        self.mask_cache = torch.tril(torch.ones(max_seq_length, max_seq_length, dtype=torch.bool, device=device))

    def clear_kv_cache(self) -> None:
        self.cleared += 1
        self.mask_cache = None
        for block in self.blocks:
            block.kv_cache = None

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("CUDA out of memory (simulated)")
        if idx.shape[1] > self.max_seq_length:
            raise ValueError(f"Cannot forward sequence of length {idx.shape[1]}, max is {self.max_seq_length}")
        if input_pos is None:
            return self._logits(idx, torch.arange(idx.shape[1]), None)
        if self.mask_cache is None:
            raise TypeError("You need to call `model.set_kv_cache()`")
        return self._logits(idx, input_pos, self.mask_cache[None, None, input_pos])


def _kv_caches(model: nn.Module) -> list:
    return [block.kv_cache for block in model.blocks]


def test_gpt_fast_greedy_matches_reforward():
    model = GptFastLM()
    out = generate(model, PROMPT, max_new_tokens=12)
    expected = greedy_reference(ReForward(model), PROMPT, 12)
    assert len(set(expected[:, 5:].flatten().tolist())) >= 4
    assert torch.equal(out, expected)
    assert torch.equal(generate(ReForward(model), PROMPT, max_new_tokens=12), expected)


def test_gpt_fast_sampling_matches_reforward():
    model = GptFastLM()
    kw = dict(max_new_tokens=12, do_sample=True, top_p=0.9)
    out = generate(model, PROMPT, generator=torch.Generator().manual_seed(7), **kw)
    expected = generate(ReForward(model), PROMPT, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(out, expected)


def test_gpt_fast_second_call_may_be_longer_than_the_first():
    model = GptFastLM(block_size=32)
    generate(model, PROMPT, max_new_tokens=3)  # setup_caches(2, 8): model.max_seq_length is now 8
    out = generate(model, PROMPT, max_new_tokens=12)  # 17 <= block_size 32
    assert torch.equal(out, greedy_reference(ReForward(model), PROMPT, 12))


def test_gpt_fast_smaller_batch_after_larger_batch():
    model = GptFastLM()
    generate(model, PROMPT, max_new_tokens=4)  # caches for batch 2
    out = generate(model, PROMPT[:1], max_new_tokens=4)
    assert torch.equal(out, greedy_reference(ReForward(model), PROMPT[:1], 4))


def test_gpt_fast_generate_completions_with_mixed_lengths():
    model = GptFastLM()
    prompts = [[3, 14, 15, 9, 2], [6, 5, 3, 5, 8], [7, 7, 1]]  # groups: two of length 5, then one of 3
    out = generate_completions(model, prompts, max_new_tokens=4)
    assert out == [greedy_reference(ReForward(model), torch.tensor([p]), 4)[0, len(p):].tolist() for p in prompts]


def test_litgpt_style_greedy_matches_plain_and_clears_cache():
    model = LitStyleLM()
    out = generate(model, PROMPT, max_new_tokens=12)
    assert model.allocated == [(2, 17)] and model.cleared == 1
    assert _kv_caches(model) == [None, None] and model.mask_cache is None
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
    assert _kv_caches(model) == [None, None] and model.mask_cache is None


def test_use_cache_false_calls_a_cache_model_the_plain_way():
    model = LitStyleLM()
    out = generate(model, PROMPT, max_new_tokens=6, use_cache=False)
    assert model.allocated == [] and model.cleared == 0
    assert torch.equal(out, greedy_reference(model, PROMPT, 6))


# ---------------------------------------------------------------------------------------- real litgpt
@pytest.fixture(scope="module")
def litgpt_model():
    litgpt_model_module = pytest.importorskip("litgpt.model")
    from litgpt.config import Config

    config = Config(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=48, padded_vocab_size=48, bias=True)
    with seeded(0):
        model = litgpt_model_module.GPT(config)
        for p in model.parameters():
            nn.init.normal_(p, std=0.5)
    return model.eval()


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
def _tiny_gpt2() -> GPT2LMHeadModel:
    with seeded(0):
        config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=32,
                            bos_token_id=None, eos_token_id=None)
        return GPT2LMHeadModel(config).eval()


class _OnlySetupCaches(CumMeanLM):
    def setup_caches(self, max_batch_size, max_seq_length):  # gpt-fast's protocol, nothing else
        pass


@pytest.mark.parametrize(("model", "use_cache", "expected"), [
    (CumMeanLM(), True, PlainAdapter),
    (LitStyleLM(), True, LitGPTAdapter),
    (GptFastLM(), True, GptFastAdapter),
    (_OnlySetupCaches(), True, GptFastAdapter),
    (_tiny_gpt2(), True, HFAdapter),
    (LitStyleLM(), False, PlainAdapter),
    (GptFastLM(), False, GptFastAdapter),  # its forward needs the caches: it recomputes instead
    (_tiny_gpt2(), False, HFAdapter),  # transformers models handle use_cache=False themselves
], ids=["plain", "litgpt", "gpt-fast", "setup_caches-only", "hf", "litgpt-no-cache", "gpt-fast-no-cache",
        "hf-no-cache"])
def test_auto_detection(model, use_cache, expected):
    runner = resolve_adapter(model, use_cache=use_cache)
    assert type(runner) is expected and runner.model is model
    assert type(resolve_adapter(model, "auto", use_cache=use_cache)) is expected


def test_gpt_fast_without_cache_recomputes_the_whole_sequence_and_matches_cached():
    model = GptFastLM()
    runner = resolve_adapter(model, use_cache=False)
    assert runner.recompute and not runner.can_compile
    out = generate(model, PROMPT, max_new_tokens=10, use_cache=False)
    assert torch.equal(out, generate(model, PROMPT, max_new_tokens=10))
    assert torch.equal(out, greedy_reference(ReForward(model), PROMPT, 10))


def test_hf_adapter_carries_use_cache():
    assert resolve_adapter(_tiny_gpt2(), use_cache=False).use_cache is False


class _PastKeyValuesGPT2(GPT2LMHeadModel):
    """A transformers model whose forward calls its cache ``past_key_values``, as remote code written for older
    releases does (transformers itself renamed it ``cache`` during 5.x)."""

    def forward(self, input_ids=None, past_key_values=None, attention_mask=None, position_ids=None, use_cache=None,
                return_dict=None, logits_to_keep=0):
        self.calls.append((input_ids.shape[1], past_key_values is not None))
        cache_key = "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"
        out = super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=use_cache, logits_to_keep=logits_to_keep, **{cache_key: past_key_values})
        return {"logits": out.logits, "past_key_values": out[cache_key]}


def test_hf_cache_goes_by_the_name_the_forward_takes():
    base = _tiny_gpt2()
    model = _PastKeyValuesGPT2(base.config).eval()
    model.load_state_dict(base.state_dict())
    model.calls = []
    ids = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(0))
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
    assert runner.closed == 1 and _kv_caches(model) == [None, None]


def test_user_adapter_class_is_instantiated_with_the_model():
    model = PagedLM()
    out = generate(model, PROMPT, max_new_tokens=4, adapter=PagedAdapter)
    assert model.cleared == 1
    assert torch.equal(out, greedy_reference(model, PROMPT, 4))


# ---------------------------------------------------------------------------------------- transformers
def test_hf_cached_and_uncached_agree():
    model = _tiny_gpt2()
    with seeded(1):
        for p in model.parameters():
            nn.init.normal_(p, std=0.5)
    cached = generate(model, PROMPT, max_new_tokens=10)
    uncached = generate(model, PROMPT, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, greedy_reference(lambda ids: model(ids).logits, PROMPT, 10))


# ---------------------------------------------------------------------------------------- compiled decode step
class GraphRecorder:
    """A `torch.compile` backend that runs the captured graphs eagerly and records them and their input addresses."""

    def __init__(self) -> None:
        self.graphs = 0
        self.addresses: list[tuple[int, ...]] = []

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.graphs += 1

        def run(*args):
            # The step's own inputs (token ids and position), not the weights and caches.
            self.addresses.append(tuple(a.data_ptr() for a in args if isinstance(a, torch.Tensor) and a.dtype == torch.long))
            return graph(*args)

        return run


@pytest.fixture(params=["litgpt", "gpt-fast"])
def cache_model(request) -> nn.Module:
    """A real litgpt GPT, or the faithful gpt-fast copy (`LitStyleLM` counts its calls, which dynamo would
    rightly recompile for)."""
    return request.getfixturevalue("litgpt_model") if request.param == "litgpt" else GptFastLM()


def test_compiled_decode_step_is_one_graph_with_fixed_input_addresses(cache_model):
    model = cache_model
    recorder = GraphRecorder()
    eager = generate(model, PROMPT, max_new_tokens=10)
    got = generate(model, PROMPT, max_new_tokens=10, compile={"backend": recorder})
    assert torch.equal(got, eager)
    assert recorder.graphs == 1 and len(recorder.addresses) == 9  # 9 decode steps, the prompt runs eagerly
    assert len(set(recorder.addresses)) == 1
    # A second call with the same shapes reuses the graph.
    assert torch.equal(generate(model, PROMPT, max_new_tokens=10, compile={"backend": recorder}), eager)
    assert recorder.graphs == 1


def test_compiled_decode_step_samples_like_eager(cache_model):
    model = cache_model
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.3, top_k=10)
    eager = generate(model, PROMPT, generator=torch.Generator().manual_seed(5), **kw)
    got = generate(model, PROMPT, generator=torch.Generator().manual_seed(5), compile={"backend": GraphRecorder()}, **kw)
    assert torch.equal(got, eager)


def test_compiled_decode_outputs_are_copies():
    # With CUDA graphs, the next replay overwrites a step's output: decode returns a copy.
    model = GptFastLM()
    static = {}

    def overwriting(graph, example_inputs):
        def run(*args):
            out = graph(*args)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            buffer = static.setdefault("out", torch.empty_like(logits))
            buffer.copy_(logits)
            return (buffer,) if isinstance(out, (tuple, list)) else buffer
        return run

    adapter = GptFastAdapter(model)
    adapter.compile({"backend": overwriting})
    ids = PROMPT
    adapter.prefill(ids, None, max_length=8)
    first = adapter.decode(torch.cat([ids, ids[:, :1]], dim=1), None)
    kept = first.clone()
    adapter.decode(torch.cat([ids, ids[:, :2]], dim=1), None)
    adapter.close()
    assert torch.equal(first, kept)


def test_compiled_decode_step_with_inductor_matches_eager_greedy():
    # The real compiler (C++ kernels on the CPU): a few seconds.
    model = GptFastLM()
    eager = generate(model, PROMPT, max_new_tokens=8)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=8, compile=True), eager)


@pytest.mark.parametrize("adapter", ["plain", "hf"])
def test_compile_needs_a_static_kv_cache(adapter):
    model = LitStyleLM() if adapter == "plain" else GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=VOCAB))
    with pytest.raises(ValueError, match="`compile` needs a model with a static KV cache"):
        # A transformers model without its cache has no fixed shapes either.
        generate(model, PROMPT, max_new_tokens=3, adapter=adapter, compile=True, use_cache=adapter == "plain")


def test_transformers_decode_compiles_over_a_static_cache_as_one_graph():
    model = _tiny_gpt2()
    recorder = GraphRecorder()
    for kw in (dict(), dict(do_sample=True, top_k=10)):
        eager = generate(model, PROMPT, max_new_tokens=10, generator=torch.Generator().manual_seed(3), **kw)
        got = generate(model, PROMPT, max_new_tokens=10, generator=torch.Generator().manual_seed(3),
                       compile={"backend": recorder}, **kw)
        assert torch.equal(got, eager)
    assert recorder.graphs == 1 and len(recorder.addresses) == 18  # 9 decode steps a call; the prompt runs eagerly
    assert not any(name.startswith("_compiled") for name in vars(model))  # the model is left as it was


def test_transformers_decode_with_inductor_matches_eager():
    # The real compiler (C++ kernels on the CPU): a few seconds.
    model = _tiny_gpt2()
    eager = generate(model, PROMPT, max_new_tokens=8)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=8, compile=True), eager)


def test_compile_must_be_a_bool_or_a_mapping():
    with pytest.raises(TypeError, match="`compile` must be a bool or a mapping of torch.compile arguments, got 'yes'"):
        generate(LitStyleLM(), PROMPT, max_new_tokens=3, compile="yes")
