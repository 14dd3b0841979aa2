"""Tiny training runs for the callback tests: LightningModules that train in milliseconds, a user's own GPT kept in
``self.model`` as users write it, a real CPU Trainer with a TensorBoardLogger, and the text it logged."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from .tokenization import SYMBOLS, VOCAB, CharTokenizer


class TinyLM(pl.LightningModule):
    """Embedding → dropout → MLP → logits `(B, T, V)`; a plain `forward(ids)` model with a context of 16."""

    def __init__(self, dropout: float = 0.1, block_size: int = 16, fail_forward: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        v = len(VOCAB)
        self.tokenizer = CharTokenizer()
        self.block_size = block_size
        self.emb = nn.Embedding(v, 24)
        self.pos = nn.Embedding(block_size, 24)
        self.drop = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(24, 48), nn.GELU(), nn.Linear(48, v))
        self.fail_forward = fail_forward

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.fail_forward and not self.training:
            raise RuntimeError("forward exploded")
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.mlp(self.drop(self.emb(ids) + self.pos(positions)))  # (B, T, V)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        logits = self(x[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        data = torch.randint(0, len(VOCAB), (96, self.block_size + 1), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=8, shuffle=True)


def trainer(tmp_path, callbacks=(), **kwargs) -> pl.Trainer:
    """A real CPU Trainer with a TensorBoardLogger under ``tmp_path``."""
    options = {"max_steps": 6, "accelerator": "cpu", "devices": 1, "default_root_dir": str(tmp_path),
               "enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False,
               "log_every_n_steps": 1, "logger": TensorBoardLogger(str(tmp_path), name="tb", version=0)}
    options.update(kwargs)
    return pl.Trainer(callbacks=list(callbacks), **options)


def text_events(log_dir: str) -> dict[str, dict[int, str]]:
    """TensorBoard text events: tag → {step: text} (tags without TensorBoard's `/text_summary` suffix)."""
    acc = EventAccumulator(log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    out: dict[str, dict[int, str]] = {}
    for tag in acc.Tags()["tensors"]:
        events = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors(tag)}
        out[tag.removesuffix("/text_summary")] = events
    return out


class TinyCacheLM(TinyLM):
    """TinyLM plus one causal attention layer with a litgpt-style KV cache (`set_kv_cache`, `input_pos`)."""

    def __init__(self, block_size: int = 32) -> None:
        super().__init__(dropout=0.0, block_size=block_size)
        self.max_seq_length = block_size
        self.qkv = nn.Linear(24, 72)
        self.kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_kv_cache(self, batch_size: int, max_seq_length: int | None = None, device=None, dtype=None) -> None:
        length = max_seq_length or self.max_seq_length
        self.kv_cache = (torch.zeros(batch_size, length, 24, device=device),
                         torch.zeros(batch_size, length, 24, device=device))

    def clear_kv_cache(self) -> None:
        self.kv_cache = None

    def forward(self, ids: torch.Tensor, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device) if input_pos is None else input_pos
        x = self.emb(ids) + self.pos(positions)  # (B, T, C)
        q, k, v = self.qkv(x).split(24, dim=-1)
        if input_pos is None:
            mask = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).tril()
        else:
            keys, values = self.kv_cache
            keys[:, input_pos], values[:, input_pos] = k, v
            k, v = keys, values
            mask = torch.arange(keys.shape[1], device=ids.device)[None, :] <= input_pos[:, None]  # (T, S)
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.mlp(x + att)  # (B, T, V)


def plan_for(model: nn.Module, tokenizer, generation: dict, *, score: bool = False, also_greedy: bool = False,
             vocab: int | None = None):
    """The plan a monitor would settle for ``model`` (called as it is) before its probe: for rounds run by hand."""
    from dataclasses import replace

    from lightning_gen.monitor.network import Network
    from lightning_gen.monitor.plan import settle_plan, settle_target

    network = Network(model, model, "model", "model")
    target = settle_target(model, network, adapter=None, use_cache=True, context_length=None)
    plan = settle_plan(target, tokenizer, generation, also_greedy=also_greedy)
    vocab = vocab if vocab is not None else tokenizer.vocab_size
    return replace(plan, vocab=vocab, score=score)


# ------------------------------------------------------------------------------------------------ a user's own
class GPT(nn.Module):
    """A user's own 30-line GPT: its context is ``self.block`` (a name no library knows), 64 learned positions."""

    def __init__(self, vocab: int = len(SYMBOLS), block: int = 64, width: int = 32) -> None:
        super().__init__()
        self.block = block
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(block, width)
        layer = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        length = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(length, device=idx.device))  # (B, T, C)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=idx.device)
        return self.head(self.blocks(x, mask=mask, is_causal=True))  # (B, T, V)


class Module(pl.LightningModule):
    """The usual LightningModule: the network in ``self.model``, no ``forward`` of its own."""

    def __init__(self, network: nn.Module | None = None, tokenizer=None, vocab: int = len(SYMBOLS)) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = network if network is not None else GPT(vocab)
        self.tokenizer = tokenizer if tokenizer is not None else CharTokenizer(SYMBOLS, eos=True)
        self.vocab = vocab

    def training_step(self, batch, batch_idx):
        (x,) = batch
        logits = self.model(x[:, :-1])
        return F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        data = torch.randint(0, len(SYMBOLS), (16, 33), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=4)
