"""What every round (and the probe) runs inside, so that sampling leaves training exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_gen.monitor._gather import full_parameters
from lightning_gen.monitor._rng import forked_rng
from lightning_gen.monitor.distributed import is_fsdp1

__all__ = ["gradient_checkpointing_off", "round_guards"]


@contextmanager
def gradient_checkpointing_off(model: nn.Module) -> Iterator[None]:
    """Switch off every submodule's ``gradient_checkpointing`` flag (HF and most custom models) for sampling."""
    flagged = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for module in flagged:
        module.gradient_checkpointing = False
    try:
        yield
    finally:
        for module in flagged:
            module.gradient_checkpointing = True


@contextmanager
def round_guards(trainer: pl.Trainer, model: nn.Module, *, mode: str, empty_cache: bool) -> Iterator[Any]:
    """Yield the module a round calls, inside every guard a round needs.

    A fork of every global RNG stream (training never sees a draw of the model's eval forward), the full
    parameters in ``"gather"`` mode, the trainer's precision context, gradient checkpointing off; afterwards,
    with ``empty_cache``, cached GPU memory is released.
    """
    strategy = trainer.strategy
    if mode == "lockstep" and is_fsdp1(strategy) and model is trainer.lightning_module:
        model = strategy.model  # FSDP1 gathers the root's parameters only when the root module is called
    gathered: Any = nullcontext()
    if mode in ("gather", "lockstep"):  # sharded strategies only: the others have nothing to gather
        gathered = full_parameters(strategy.model, outermost_only=mode == "lockstep")
    try:
        with forked_rng(strategy.root_device), gathered, trainer.precision_plugin.forward_context(), \
                gradient_checkpointing_off(model):
            yield model
    finally:
        if empty_cache and torch.cuda.is_available():
            torch.cuda.empty_cache()
