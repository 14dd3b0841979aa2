"""gpt-fast re-created (pytorch-labs/gpt-fast's ``Transformer``), written for these tests from the facts of the real
code.

``setup_caches(max_batch_size, max_seq_length)`` (a no-op when the caches are big enough, lengths rounded up to 8,
caches in the weights' dtype, ``causal_mask`` a buffer, ``freqs_cis`` an attribute), ``forward(idx, input_pos)``
that needs them, and its prefill/decode loop; small enough to train in milliseconds. `tiny_gpt_fast` builds a
seeded one; `ReForward` is a plain view of one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .seeding import init_weights, seeded


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
    freqs_cis = freqs_cis.view(-1, xshaped.size(1), 1, xshaped.size(3), 2)  # (1 or B, T, 1, n_elem / 2, 2)
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
        self.freqs_cis = precompute_freqs_cis(self.config.block_size, self.config.head_dim, self.config.rope_base,
                                              dtype)
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


def tiny_gpt_fast(vocab_size: int = 65, *, block_size: int = 32, seed: int = 0) -> GptFast:
    """A one-layer `GptFast`, 32 wide, with `init_weights` from ``seed`` (the global RNG left as it was)."""
    with seeded(seed):
        return init_weights(GptFast(ModelArgs(block_size=block_size, vocab_size=vocab_size)), seed)


class ReForward(nn.Module):
    """A plain view of a gpt-fast model: fresh caches and the whole sequence on every call."""

    def __init__(self, inner: GptFast) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.inner.max_seq_length = -1  # force a fresh, empty cache
        self.inner.setup_caches(ids.shape[0], ids.shape[1])
        return self.inner(ids, torch.arange(ids.shape[1]))
