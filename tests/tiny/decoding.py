"""What the decoding tests decode with: a prompt, a plain model whose whole context matters, litgpt's cache protocol
re-created with counters, the real litgpt, and the reference greedy loop.

Each is seeded without touching the global RNG, and small enough to decode in milliseconds.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .gpt_fast import KVCache
from .seeding import seeded

N_TOKENS = 32  # the ids of the decoding tests' models
PROMPT = torch.tensor([[3, 14, 15, 9, 2], [6, 5, 3, 5, 8]])  # (B=2, T=5)


def greedy_reference(model: nn.Module, ids: torch.Tensor, steps: int, context: int | None = None) -> torch.Tensor:
    """nanoGPT's ``generate`` loop with argmax: crop to the context, take the last logits, append."""
    with torch.no_grad():
        for _ in range(steps):
            window = ids if context is None else ids[:, -context:]
            logits = model(window)[:, -1]  # (B, V)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


class CumMeanLM(nn.Module):
    """Each position sees the mean of all embeddings so far plus its own: the whole context matters, and padding
    would change its output.

    ``block_size`` makes it refuse longer inputs, like nanoGPT's assertion; ``batch_shapes`` records every input's
    `(B, T)`.
    """

    def __init__(self, vocab_size: int = N_TOKENS, *, seed: int = 1, block_size: int | None = None) -> None:
        super().__init__()
        with seeded(seed):
            self.emb = nn.Embedding(vocab_size, 16)
            self.head = nn.Linear(16, vocab_size)
            nn.init.normal_(self.emb.weight, std=2.0)
        with seeded(seed + 100):
            self.mix = nn.Linear(16, 16)
            nn.init.normal_(self.mix.weight, std=0.5)
        self.limit = block_size
        self.batch_shapes: list[tuple[int, int]] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.limit is not None and ids.shape[1] > self.limit:
            raise ValueError(f"got {ids.shape[1]} tokens, block size is {self.limit}")
        self.batch_shapes.append(tuple(ids.shape))
        x = self.emb(ids)  # (B, T, C)
        mean = x.cumsum(1) / torch.arange(1, ids.shape[1] + 1).view(1, -1, 1)
        return self.head(torch.tanh(x + self.mix(mean)))  # (B, T, V)


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


class LitStyleLM(nn.Module):
    """litgpt's ``GPT`` protocol: ``set_kv_cache``/``clear_kv_cache``, ``forward(idx, input_pos=None)``
    (no cache without ``input_pos``), ``max_seq_length`` and ``config.vocab_size``.

    ``fail_on_call`` makes the n-th forward raise, as an OOM halfway through decoding would.
    """

    def __init__(self, block_size: int = 32, seed: int = 0, fail_on_call: int | None = None) -> None:
        super().__init__()
        with seeded(seed):
            self.tok = nn.Embedding(N_TOKENS, 16)
            self.pos = nn.Embedding(block_size, 16)
            self.blocks = nn.ModuleList(Block(16, 2) for _ in range(2))
            self.ln_f = nn.LayerNorm(16)
            self.head = nn.Linear(16, N_TOKENS)
            # Strong embeddings and head, weak blocks: greedy output varies with the input and sampling is
            # far from uniform, so a wrong position or a stale cache entry changes the tokens.
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=1.0 if name.startswith(("tok", "pos", "head")) else 0.2)
        self.config = SimpleNamespace(block_size=block_size, vocab_size=N_TOKENS)
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
            block.kv_cache = KVCache(batch_size, max_seq_length, block.n_head, 16 // block.n_head,
                                     dtype=torch.float32).to(device)
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

    def _logits(self, idx: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x, mask, pos)
        return self.head(self.ln_f(x))  # (B, T, V)


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
