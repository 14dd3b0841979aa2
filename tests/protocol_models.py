"""Faithful re-creations of the model code people pretrain with, each with its own reference greedy loop.

Written for these tests from the facts of the real code (what each method accepts, returns, asserts and
allocates), small enough to train in milliseconds:

* `NanoGPT`: karpathy/nanoGPT's ``GPT`` — ``config.block_size`` / ``config.vocab_size`` (padded), ``forward(idx,
  targets=None) -> (logits, loss)`` with logits `(B, 1, V)` at inference, the "Cannot forward sequence of length"
  assertion, and its ``generate`` loop.
* `GptFast`: pytorch-labs/gpt-fast's ``Transformer`` — ``setup_caches(max_batch_size, max_seq_length)`` (a no-op
  when the caches are big enough, lengths rounded up to 8, caches in the weights' dtype, ``causal_mask`` a
  buffer, ``freqs_cis`` an attribute), ``forward(idx, input_pos)`` that needs them, and its prefill/decode loop.
* `TorchtuneDecoder`: pytorch/torchtune's ``TransformerDecoder`` — ``setup_caches(batch_size, dtype, *,
  encoder_max_seq_len=None, decoder_max_seq_len=None)`` (skipped when caches exist), KV caches that count their
  own write position (``cache_pos``), ``forward(tokens, *, mask=None, input_pos=None)`` that requires a mask
  while caches are on, ``caches_are_enabled()`` / ``reset_caches()``, and its generate loop.
* `RecurrentLM`: a recurrent-state model in the style of mamba-minimal (``args.vocab_size``, ``forward(ids,
  state=None) -> (logits, state)``) with its `StateAdapter`.

litgpt is not re-created: the real package is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_gen.decoding.adapters import ModelAdapter


# ------------------------------------------------------------------------------------------------ nanoGPT
@dataclass
class GPTConfig:
    block_size: int = 32
    vocab_size: int = 128  # padded up from the tokenizer's 65, as nanoGPT pads 50257 to 50304
    n_layer: int = 1
    n_head: int = 2
    n_embd: int = 32
    dropout: float = 0.0
    bias: bool = True


class _NanoBlock(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's ``GPT``: tied embeddings, last-position logits `(B, 1, V)` unless given targets."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([_NanoBlock(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        b, t = idx.size()
        assert t <= self.config.block_size, f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])  # inference: only the last position, (B, 1, V)
            loss = None
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """nanoGPT's loop, greedy: crop to the block size, last logits, argmax, append."""
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            idx = torch.cat((idx, logits[:, -1, :].argmax(-1, keepdim=True)), dim=1)
        return idx


# ------------------------------------------------------------------------------------------------ gpt-fast
def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


@dataclass
class ModelArgs:
    block_size: int = 32
    vocab_size: int = 65
    n_layer: int = 1
    n_head: int = 2
    dim: int = 32
    n_local_heads: int = 1  # grouped-query attention, as the Llama models gpt-fast runs
    rope_base: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head


class KVCache(nn.Module):
    def __init__(self, max_batch_size: int, max_seq_length: int, n_heads: int, head_dim: int,
                 dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        shape = (max_batch_size, n_heads, max_seq_length, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype))

    def update(self, input_pos: torch.Tensor, k_val: torch.Tensor, v_val: torch.Tensor):
        assert input_pos.shape[0] == k_val.shape[2]  # input_pos: [S], k_val: [B, H, S, D]
        k_out, v_out = self.k_cache, self.v_cache
        k_out[:, :, input_pos] = k_val
        v_out[:, :, input_pos] = v_val
        return k_out, v_out


def precompute_freqs_cis(seq_len: int, n_elem: int, base: float, dtype: torch.dtype) -> torch.Tensor:
    freqs = 1.0 / (base ** (torch.arange(0, n_elem, 2)[: (n_elem // 2)].float() / n_elem))
    t = torch.arange(seq_len, device=freqs.device)
    freqs = torch.outer(t, freqs)
    freqs_cis = torch.polar(torch.ones_like(freqs), freqs)
    return torch.stack([freqs_cis.real, freqs_cis.imag], dim=-1).to(dtype=dtype)  # (T, n_elem / 2, 2)


def apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    xshaped = x.float().reshape(*x.shape[:-1], -1, 2)
    freqs_cis = freqs_cis.view(1, xshaped.size(1), 1, xshaped.size(3), 2)
    x_out2 = torch.stack([
        xshaped[..., 0] * freqs_cis[..., 0] - xshaped[..., 1] * freqs_cis[..., 1],
        xshaped[..., 1] * freqs_cis[..., 0] + xshaped[..., 0] * freqs_cis[..., 1],
    ], -1)
    return x_out2.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class _FastAttention(nn.Module):
    def __init__(self, config: ModelArgs) -> None:
        super().__init__()
        total_head_dim = (config.n_head + 2 * config.n_local_heads) * config.head_dim
        self.wqkv = nn.Linear(config.dim, total_head_dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)
        self.kv_cache: KVCache | None = None
        self.n_head, self.n_local_heads, self.head_dim, self.dim = (config.n_head, config.n_local_heads,
                                                                    config.head_dim, config.dim)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, mask: torch.Tensor,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        kv_size = self.n_local_heads * self.head_dim
        q, k, v = self.wqkv(x).split([self.dim, kv_size, kv_size], dim=-1)
        q = q.view(bsz, seqlen, self.n_head, self.head_dim)
        k = k.view(bsz, seqlen, self.n_local_heads, self.head_dim)
        v = v.view(bsz, seqlen, self.n_local_heads, self.head_dim)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
        k = k.repeat_interleave(self.n_head // self.n_local_heads, dim=1)
        v = v.repeat_interleave(self.n_head // self.n_local_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0)
        return self.wo(y.transpose(1, 2).contiguous().view(bsz, seqlen, self.dim))


class _FastBlock(nn.Module):
    def __init__(self, config: ModelArgs) -> None:
        super().__init__()
        self.attention = _FastAttention(config)
        self.feed_forward = nn.Sequential(nn.Linear(config.dim, 2 * config.dim, bias=False), nn.SiLU(),
                                          nn.Linear(2 * config.dim, config.dim, bias=False))
        self.ffn_norm, self.attention_norm = RMSNorm(config.dim, config.norm_eps), RMSNorm(config.dim, config.norm_eps)

    def forward(self, x, input_pos, freqs_cis, mask) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis, mask, input_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class GptFast(nn.Module):
    """gpt-fast's ``Transformer``."""

    def __init__(self, config: ModelArgs) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(_FastBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, eps=config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.freqs_cis: torch.Tensor | None = None
        self.register_buffer("causal_mask", None, persistent=False)
        self.max_batch_size = -1
        self.max_seq_length = -1

    def setup_caches(self, max_batch_size: int, max_seq_length: int) -> None:
        if self.max_seq_length >= max_seq_length and self.max_batch_size >= max_batch_size:
            return
        max_seq_length = find_multiple(max_seq_length, 8)
        self.max_seq_length = max_seq_length
        self.max_batch_size = max_batch_size
        dtype = self.output.weight.dtype
        for b in self.layers:
            b.attention.kv_cache = KVCache(max_batch_size, max_seq_length, self.config.n_local_heads,
                                           self.config.head_dim, dtype)
        self.freqs_cis = precompute_freqs_cis(self.config.block_size, self.config.head_dim, self.config.rope_base, dtype)
        self.causal_mask = torch.tril(torch.ones(self.max_seq_length, self.max_seq_length, dtype=torch.bool))

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        assert self.freqs_cis is not None, "Caches must be initialized first"
        mask = self.causal_mask[None, None, input_pos]
        freqs_cis = self.freqs_cis[input_pos]
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, input_pos, freqs_cis, mask)
        return self.output(self.norm(x))  # (B, T, V)


def gpt_fast_generate(model: GptFast, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """gpt-fast's ``generate`` (greedy): caches under the prompt's device, prefill, then one token at a time."""
    T = prompt.size(-1)
    with torch.device(prompt.device):
        model.setup_caches(max_batch_size=prompt.size(0), max_seq_length=T + max_new_tokens)
    seq = prompt
    with torch.no_grad():
        input_pos = torch.arange(0, T, device=prompt.device)
        next_token = model(prompt, input_pos)[:, -1].argmax(-1, keepdim=True)  # prefill
        seq = torch.cat([seq, next_token], dim=1)
        input_pos = torch.tensor([T], device=prompt.device)
        for _ in range(max_new_tokens - 1):  # decode_n_tokens
            next_token = model(next_token, input_pos)[:, -1].argmax(-1, keepdim=True)
            input_pos += 1
            seq = torch.cat([seq, next_token], dim=1)
    return seq


# ------------------------------------------------------------------------------------------------ torchtune
class _TuneKVCache(nn.Module):
    """torchtune's KVCache: writes at its own ``cache_pos``, which every update advances."""

    def __init__(self, batch_size: int, max_seq_len: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("cache_pos", torch.arange(0, max_seq_len), persistent=False)
        self.batch_size = batch_size

    def reset(self) -> None:
        self.k_cache.zero_()
        self.v_cache.zero_()
        self.cache_pos -= self.size

    @property
    def size(self) -> int:
        return self.cache_pos[0].item()

    def update(self, k_val: torch.Tensor, v_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bsz, _, seq_len, _ = k_val.shape
        if bsz > self.k_cache.shape[0]:
            raise ValueError(f"The current cache has been setup with a batch size of {self.k_cache.shape[0]}, but "
                             f"found new key tensors with batch size {k_val.shape[0]}!")
        assert (self.cache_pos[0] + seq_len) <= self.k_cache.shape[2]
        k_out, v_out = self.k_cache, self.v_cache
        k_out[:, :, self.cache_pos[:seq_len]] = k_val
        v_out[:, :, self.cache_pos[:seq_len]] = v_val
        self.cache_pos.add_(seq_len)
        return k_out, v_out


class _TuneRoPE(nn.Module):
    def __init__(self, dim: int, max_seq_len: int, base: int = 10_000) -> None:
        super().__init__()
        theta = 1.0 / (base ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
        idx_theta = torch.einsum("i, j -> ij", torch.arange(max_seq_len).float(), theta)
        self.register_buffer("cache", torch.stack([idx_theta.cos(), idx_theta.sin()], dim=-1), persistent=False)

    def forward(self, x: torch.Tensor, *, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        seq_len = x.size(1)  # x: [b, s, n_h, h_d]
        rope_cache = self.cache[:seq_len] if input_pos is None else self.cache[input_pos]
        xshaped = x.float().reshape(*x.shape[:-1], -1, 2)
        rope_cache = rope_cache.view(-1, xshaped.size(1), 1, xshaped.size(3), 2)
        x_out = torch.stack([
            xshaped[..., 0] * rope_cache[..., 0] - xshaped[..., 1] * rope_cache[..., 1],
            xshaped[..., 1] * rope_cache[..., 0] + xshaped[..., 0] * rope_cache[..., 1],
        ], -1)
        return x_out.flatten(3).type_as(x)


class _TuneAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, max_seq_len: int) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, num_kv_heads * self.head_dim, bias=False)
        self.output_proj = nn.Linear(dim, dim, bias=False)
        self.pos_embeddings = _TuneRoPE(self.head_dim, max_seq_len)
        self.kv_cache: _TuneKVCache | None = None
        self.cache_enabled = False
        self.is_causal = True

    def setup_cache(self, batch_size: int, dtype: torch.dtype, max_seq_len: int) -> None:
        if self.kv_cache is not None:  # torchtune logs "Key value caches are already setup ... Skipping."
            return
        self.kv_cache = _TuneKVCache(batch_size, max_seq_len, self.num_kv_heads, self.head_dim, dtype)
        self.cache_enabled = True

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None) -> torch.Tensor:
        b, s_x, _ = x.shape
        q = self.pos_embeddings(self.q_proj(x).view(b, s_x, self.num_heads, self.head_dim), input_pos=input_pos)
        k = self.pos_embeddings(self.k_proj(y).view(b, s_x, -1, self.head_dim), input_pos=input_pos)
        v = self.v_proj(y).view(b, s_x, -1, self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, n_h, s, h_d)
        if self.kv_cache is not None and self.cache_enabled:
            k, v = self.kv_cache.update(k, v)
        if self.num_heads != self.num_kv_heads:
            k = k.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
            v = v.repeat_interleave(self.num_heads // self.num_kv_heads, dim=1)
        is_causal = self.kv_cache is None and mask is None and self.is_causal
        attn_mask = mask[:, None, :, :] if mask is not None else None
        output = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal and mask is None)
        return self.output_proj(output.transpose(1, 2).contiguous().view(b, s_x, -1))


class _TuneLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, max_seq_len: int) -> None:
        super().__init__()
        self.attn = _TuneAttention(dim, num_heads, num_kv_heads, max_seq_len)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim, bias=False), nn.SiLU(), nn.Linear(2 * dim, dim, bias=False))
        self.sa_norm, self.mlp_norm = RMSNorm(dim), RMSNorm(dim)

    def setup_caches(self, batch_size: int, dtype: torch.dtype, *, encoder_max_seq_len: int | None = None,
                     decoder_max_seq_len: int) -> None:
        self.attn.setup_cache(batch_size, dtype, max_seq_len=decoder_max_seq_len)

    def caches_are_setup(self) -> bool:
        return self.attn.kv_cache is not None

    def caches_are_enabled(self) -> bool:  # torchtune 0.6.1's: the flag alone, set up or not
        return self.attn.cache_enabled

    def reset_cache(self) -> None:
        self.attn.kv_cache.reset()

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, input_pos: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        h = self.sa_norm(x)
        h = self.attn(h, h, mask=mask, input_pos=input_pos) + x
        return h + self.mlp(self.mlp_norm(h))


class TorchtuneDecoder(nn.Module):
    """torchtune's ``TransformerDecoder`` (its ``llama3``-style builder, tiny)."""

    def __init__(self, *, vocab_size: int = 65, num_layers: int = 1, num_heads: int = 2, num_kv_heads: int = 1,
                 embed_dim: int = 32, max_seq_len: int = 32) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab_size, embed_dim)
        self.layers = nn.ModuleList(_TuneLayer(embed_dim, num_heads, num_kv_heads, max_seq_len)
                                    for _ in range(num_layers))
        self.norm = RMSNorm(embed_dim)
        self.output = nn.Linear(embed_dim, vocab_size, bias=False)
        self.max_seq_len = max_seq_len
        self.decoder_max_cache_seq_len: int | None = None

    def setup_caches(self, batch_size: int, dtype: torch.dtype, *, encoder_max_seq_len: int | None = None,
                     decoder_max_seq_len: int | None = None) -> None:
        self.decoder_max_cache_seq_len = decoder_max_seq_len if decoder_max_seq_len is not None else self.max_seq_len
        for layer in self.layers:
            layer.setup_caches(batch_size, dtype, encoder_max_seq_len=encoder_max_seq_len,
                               decoder_max_seq_len=self.decoder_max_cache_seq_len)

    def caches_are_setup(self) -> bool:
        return self.layers[0].caches_are_setup()

    def caches_are_enabled(self) -> bool:
        return self.layers[0].caches_are_enabled()

    def reset_caches(self) -> None:
        if not self.caches_are_enabled():
            raise RuntimeError("Key value caches are not setup. Call model.setup_caches() first.")
        for layer in self.layers:
            layer.reset_cache()

    def forward(self, tokens: torch.Tensor, *, mask: torch.Tensor | None = None, encoder_input: Any = None,
                encoder_mask: Any = None, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        seq_len = tokens.shape[1]
        if seq_len > self.max_seq_len:
            raise ValueError(f"seq_len ({seq_len}) of input tensor should be smaller than max_seq_len ({self.max_seq_len})")
        if self.caches_are_enabled() and mask is None:
            raise ValueError("KV-caches for self-attention layers are setup for inference mode, causal masks must be "
                             "provided! Use the `mask` arg to provide a causal mask.")
        h = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h, mask=mask, input_pos=input_pos)
        return self.output(self.norm(h)).float()  # (B, T, V)


def torchtune_generate(model: TorchtuneDecoder, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """torchtune's ``generate`` (greedy, incremental decoding): a causal mask over the cache, ``input_pos`` rows."""
    bsz, prompt_length = prompt.shape
    total = prompt_length + max_new_tokens
    model.setup_caches(bsz, torch.float32, decoder_max_seq_len=total)
    try:
        masks = torch.tril(torch.ones(total, total, dtype=torch.bool, device=prompt.device))[None].expand(bsz, -1, -1)
        input_pos = torch.arange(0, total, device=prompt.device)[None].expand(bsz, -1)
        with torch.no_grad():
            logits = model(prompt, input_pos=input_pos[:, :prompt_length], mask=masks[:, :prompt_length])
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            generated = torch.cat([prompt, tokens], dim=-1)
            for curr_pos in range(prompt_length, total - 1):
                logits = model(tokens, input_pos=input_pos[:, curr_pos, None], mask=masks[:, curr_pos, None, :])
                tokens = logits[:, -1].argmax(-1, keepdim=True)
                generated = torch.cat([generated, tokens], dim=-1)
    finally:
        for layer in model.layers:  # torchtune's `delete_kv_caches`
            layer.attn.kv_cache, layer.attn.cache_enabled = None, False
    return generated


# ------------------------------------------------------------------------------------------------ recurrent state
@dataclass
class RecurrentArgs:
    vocab_size: int = 65
    d_model: int = 32


class RecurrentLM(nn.Module):
    """A GRU language model with mamba-minimal's surface: settings in ``args``, ``forward(ids, state=None) ->
    (logits (B, T, V), state)``; the state after the last token is all it needs to go on."""

    def __init__(self, args: RecurrentArgs) -> None:
        super().__init__()
        self.args = args
        self.embedding = nn.Embedding(args.vocab_size, args.d_model)
        self.rnn = nn.GRU(args.d_model, args.d_model, batch_first=True)
        self.lm_head = nn.Linear(args.d_model, args.vocab_size)

    def forward(self, ids: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.rnn(self.embedding(ids), state)
        return self.lm_head(out), state


def recurrent_generate(model: RecurrentLM, prompt: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The recurrent model's own greedy loop: the prompt once, then one token and the state."""
    with torch.no_grad():
        logits, state = model(prompt)
        seq = prompt
        for _ in range(max_new_tokens):
            token = logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, token], dim=1)
            logits, state = model(token, state)
    return seq


class StateAdapter(ModelAdapter):
    """The recurrent protocol for `generate`: the state carried between steps instead of a KV cache."""

    needs_room_for_new_tokens = False

    def prefill(self, input_ids, attention_mask, *, max_length):
        logits, self._state = self.model(input_ids)
        return logits[:, -1]  # (B, V)

    def decode(self, input_ids, attention_mask):
        logits, self._state = self.model(input_ids[:, -1:], self._state)
        return logits[:, -1]

    def close(self):
        self._state = None


def init_weights(model: nn.Module, seed: int, std: float = 0.3) -> nn.Module:
    """Seeded weights wide enough that greedy output varies with the input (HF-style small init stays uniform)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=std / math.sqrt(p.shape[-1]) * 4)
    return model
