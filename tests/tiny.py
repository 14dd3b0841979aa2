"""Tiny real models and data for callback tests: char tokenizers, LightningModules that train in ms, a user's own
GPT kept in ``self.model`` as users write it."""

from __future__ import annotations

import string
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
import torch.nn.functional as F
from torch import nn

VOCAB = "abcdefghijklmnopqrstuvwxyz .,<>|#*`_\n"


class CharTokenizer:
    """Character-level tokenizer over `VOCAB`; id 36 ('\\n') doubles as EOS when asked."""

    def __init__(self, eos: bool = False) -> None:
        self.vocab_size = len(VOCAB)
        self.eos_token_id = VOCAB.index("\n") if eos else None

    def encode(self, text: str) -> list[int]:
        return [VOCAB.index(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(VOCAB[i] for i in ids)


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
    options = dict(max_steps=6, accelerator="cpu", devices=1, default_root_dir=str(tmp_path),
                   enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, log_every_n_steps=1,
                   logger=TensorBoardLogger(str(tmp_path), name="tb", version=0))
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
        self.kv_cache = (torch.zeros(batch_size, length, 24, device=device), torch.zeros(batch_size, length, 24, device=device))

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


def byte_tiktoken(merges: Sequence[bytes] = (b"th", b"he", b"in", b"the")):
    """A tiktoken ``Encoding`` built offline: GPT-2's split pattern over the 256 bytes and a few merges, then
    ``<|endoftext|>`` as the last id (``n_vocab`` = 256 + merges + 1), as nanoGPT's GPT-2 tokenizer is shaped."""
    import tiktoken

    ranks = {bytes([i]): i for i in range(256)}
    for piece in merges:  # each merge joins pieces that already have ranks
        ranks[piece] = len(ranks)
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding("byte-tiny", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": len(ranks)})


def plan_for(model: nn.Module, tokenizer, generation: dict, *, score: bool = False, also_greedy: bool = False,
             vocab: int | None = None):
    """The plan a monitor would settle for ``model`` (called as it is) before its probe: for rounds run by hand."""
    from dataclasses import replace

    from lightning_gen.monitor.network import Network
    from lightning_gen.monitor.plan import settle_plan, settle_target

    network = Network(model, model, "model", "model")
    target = settle_target(model, network, adapter=None, use_cache=True, context_length=None)
    plan = settle_plan(model, target, tokenizer, generation, also_greedy=also_greedy)
    vocab = vocab if vocab is not None else tokenizer.vocab_size
    plan.adapter.vocab_size = vocab
    return replace(plan, vocab=vocab, score=score)


# ------------------------------------------------------------------------------------------------ a user's own
SYMBOLS = string.ascii_letters + string.digits + " .,!\n"  # 67 characters


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


class Chars:
    """A char tokenizer that says how many ids it has; a newline ends a text."""

    vocab_size = len(SYMBOLS)
    eos_token_id = SYMBOLS.index("\n")

    def encode(self, text: str) -> list[int]:
        return [SYMBOLS.index(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(SYMBOLS[i] for i in ids)


def meta_pkl_tokenizer():
    """nanoGPT's char tokenizer as `sample.py` builds it from ``meta.pkl``: two lambdas, no size."""
    stoi = {c: i for i, c in enumerate(SYMBOLS)}
    itos = dict(enumerate(SYMBOLS))
    return type("Meta", (), {"encode": staticmethod(lambda s: [stoi[c] for c in s]),
                             "decode": staticmethod(lambda ids: "".join(itos[i] for i in ids))})()


class Module(pl.LightningModule):
    """The usual LightningModule: the network in ``self.model``, no ``forward`` of its own."""

    def __init__(self, network: nn.Module | None = None, tokenizer=None, vocab: int = len(SYMBOLS)) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = network if network is not None else GPT(vocab)
        self.tokenizer = tokenizer if tokenizer is not None else Chars()
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
