"""A small GPT that speaks litgpt's KV-cache protocol.

nanoGPT's architecture (learned positions, pre-LN blocks, GELU MLP) with litgpt's inference interface:
``max_seq_length``, ``set_kv_cache``, ``forward(idx, input_pos)`` and ``clear_kv_cache``. Anything that
drives a litgpt ``GPT`` (``lightning_gen`` included) can therefore decode this model with a cache.

Example::

    >>> model = GPT(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=8).eval()
    >>> model.set_kv_cache(batch_size=1)
    >>> model(torch.tensor([[1, 2, 3]]), input_pos=torch.arange(3)).shape
    torch.Size([1, 3, 11])
    >>> model.clear_kv_cache()
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class KVCache(nn.Module):
    """Keys and values of one attention layer, written at the positions being decoded."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
        super().__init__()
        # Non-persistent buffers follow ``model.to(...)`` but stay out of checkpoints.
        self.register_buffer("k", k, persistent=False)  # (B_max, H, S, D)
        self.register_buffer("v", v, persistent=False)  # (B_max, H, S, D)

    def forward(
        self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` (B, H, T, D) at ``input_pos`` (T,); return the cache (B, H, S, D)."""
        batch_size = k.size(0)
        if batch_size > self.k.size(0):
            raise ValueError(
                f"batch of {batch_size} exceeds the KV cache's batch size {self.k.size(0)}; "
                "call `set_kv_cache` with a larger `batch_size`"
            )
        # A smaller batch reuses the front of the buffers, as litgpt allows.
        cache_k = self.k[:batch_size].index_copy_(2, input_pos, k.to(self.k.dtype))
        cache_v = self.v[:batch_size].index_copy_(2, input_pos, v.to(self.v.dtype))
        return cache_k, cache_v


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional KV cache."""

    def __init__(self, *, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, H, T, D)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        dropout_p = self.dropout if self.training else 0.0
        if input_pos is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            if self.kv_cache is None:
                raise TypeError("`input_pos` was given but no KV cache is set; call `set_kv_cache()` first")
            k, v = self.kv_cache(input_pos, k, v)  # (B, H, S, D)
            # Query at position p sees cache slots 0..p; later slots are stale or still zero.
            slots = torch.arange(k.size(2), device=input_pos.device)
            mask = input_pos[:, None] >= slots[None, :]  # (T, S)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: attention then MLP, each added to the residual stream."""

    def __init__(self, *, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd=n_embd, n_head=n_head, dropout=dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), input_pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A nanoGPT-style decoder with litgpt's KV-cache interface.

    Args:
        vocab_size: Number of token ids.
        block_size: Context length; the number of learned positions and the default ``max_seq_length``.
        n_layer: Number of transformer blocks.
        n_head: Attention heads per block; must divide ``n_embd``.
        n_embd: Width of the residual stream.
        dropout: Dropout probability on embeddings, attention and residual branches (training only).
        tie_weights: Share the token embedding with the output head, as GPT-2 does.

    Raises:
        ValueError: If a size is not positive, ``n_head`` does not divide ``n_embd`` or ``dropout`` is
            outside [0, 1).
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        block_size: int,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        for name, value in dict(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                                n_head=n_head, n_embd=n_embd).items():
            if value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value}")
        if n_embd % n_head:
            raise ValueError(f"`n_head` must divide `n_embd`, got n_head={n_head} and n_embd={n_embd}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.block_size = block_size
        self._max_seq_length = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd=n_embd, n_head=n_head, dropout=dropout) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2: scale residual projections so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        if tie_weights:
            self.lm_head.weight = self.wte.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def max_seq_length(self) -> int:
        """Longest sequence ``forward`` accepts; at most ``block_size`` (positions are learned)."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        if not 1 <= value <= self.block_size:
            raise ValueError(f"`max_seq_length` must be in [1, {self.block_size}], got {value}")
        self._max_seq_length = value

    def set_kv_cache(
        self,
        batch_size: int,
        max_seq_length: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Allocate zeroed key/value buffers (B, n_head, max_seq_length, head_dim) in every layer.

        ``device`` and ``dtype`` default to those of the model's weights.
        """
        max_seq_length = self.max_seq_length if max_seq_length is None else max_seq_length
        if not 1 <= max_seq_length <= self.block_size:
            raise ValueError(f"`max_seq_length` must be in [1, {self.block_size}], got {max_seq_length}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
        weight = self.wte.weight
        device = weight.device if device is None else device
        dtype = weight.dtype if dtype is None else dtype
        for block in self.blocks:
            attn = block.attn
            shape = (batch_size, attn.n_head, max_seq_length, self.wte.embedding_dim // attn.n_head)
            attn.kv_cache = KVCache(
                torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)
            )

    def clear_kv_cache(self) -> None:
        """Drop every layer's KV cache so its memory can be freed."""
        for block in self.blocks:
            block.attn.kv_cache = None

    def forward(self, idx: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits (B, T, vocab_size) for token ids ``idx`` (B, T).

        Args:
            idx: Token ids.
            input_pos: Positions (T,) of ``idx`` in the sequence. ``None`` runs the plain causal forward
                used in training and leaves the caches alone; otherwise keys and values are written to the
                cache at these positions and each token attends to cache slots up to its own position.
        """
        T = idx.size(1)
        if T > self.max_seq_length:
            raise ValueError(f"sequence of length {T} exceeds `max_seq_length` {self.max_seq_length}")
        if input_pos is None:
            pos = torch.arange(T, device=idx.device)
        elif input_pos.shape != (T,):
            raise ValueError(f"`input_pos` must have shape ({T},), got {tuple(input_pos.shape)}")
        else:
            pos = input_pos
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, input_pos)
        return self.lm_head(self.ln_f(x))  # (B, T, V)
