"""Tiny models for the adapter tests: a plain one, faithful gpt-fast and litgpt cache protocols, real litgpt and GPT-2.

Each is seeded without touching the global RNG, and small enough to decode in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

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
        # What the test reads afterwards, kept in containers: a call puts the model's attributes back as they were.
        self.counts = {"calls": 0, "cleared": 0}
        self.allocated: list[tuple[int, int]] = []

    @property
    def cleared(self) -> int:
        return self.counts["cleared"]

    def set_kv_cache(self, batch_size: int, max_seq_length: int | None = None, device=None, dtype=None) -> None:
        max_seq_length = max_seq_length or self.max_seq_length
        self.allocated.append((batch_size, max_seq_length))
        for block in self.blocks:
            block.kv_cache = KVCache(batch_size, max_seq_length, block.n_head, 16 // block.n_head).to(device)
        self.mask_cache = torch.tril(torch.ones(max_seq_length, max_seq_length, dtype=torch.bool, device=device))

    def clear_kv_cache(self) -> None:
        self.counts["cleared"] += 1
        self.mask_cache = None
        for block in self.blocks:
            block.kv_cache = None

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        self.counts["calls"] += 1
        if self.counts["calls"] == self.fail_on_call:
            raise RuntimeError("CUDA out of memory (simulated)")
        if idx.shape[1] > self.max_seq_length:
            raise ValueError(f"Cannot forward sequence of length {idx.shape[1]}, max is {self.max_seq_length}")
        if input_pos is None:
            return self._logits(idx, torch.arange(idx.shape[1]), None)
        if self.mask_cache is None:
            raise TypeError("You need to call `model.set_kv_cache()`")
        return self._logits(idx, input_pos, self.mask_cache[None, None, input_pos])


def kv_caches(model: nn.Module) -> list:
    return [block.kv_cache for block in model.blocks]


def build_litgpt() -> nn.Module:
    """A real litgpt ``GPT``: 2 layers, 16 wide, 48 tokens, context 32."""
    from litgpt.config import Config
    from litgpt.model import GPT

    config = Config(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=48, padded_vocab_size=48, bias=True)
    with seeded(0):
        model = GPT(config)
        for p in model.parameters():
            nn.init.normal_(p, std=0.5)
    return model.eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    with seeded(0):
        config = GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=32,
                            bos_token_id=None, eos_token_id=None)
        return GPT2LMHeadModel(config).eval()
