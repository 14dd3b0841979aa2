"""torchtune re-created (pytorch/torchtune's ``TransformerDecoder``), written for these tests from the facts of the
real code and checked against the real package in ``tests/monitor/test_protocols.py``.

``setup_caches(batch_size, dtype, *, encoder_max_seq_len=None, decoder_max_seq_len=None)`` (skipped when caches
exist), KV caches that count their own write position (``cache_pos``), ``forward(tokens, *, mask=None,
input_pos=None)`` that requires a mask while caches are on, ``caches_are_enabled()`` / ``reset_caches()``, and its
generate loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .gpt_fast import RMSNorm, apply_rotary_emb


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
        return apply_rotary_emb(x, rope_cache)  # torchtune's rotation is gpt-fast's arithmetic


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
            raise ValueError(f"seq_len ({seq_len}) of input tensor should be smaller than max_seq_len "
                             f"({self.max_seq_len})")
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
