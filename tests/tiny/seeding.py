"""Seeded weights that leave the caller's global RNG as it was."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build weights from ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def init_weights(model: nn.Module, seed: int, std: float = 0.3) -> nn.Module:
    """Seeded weights wide enough that greedy output varies with the input (HF-style small init stays uniform)."""
    with seeded(seed):
        for p in model.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=std / math.sqrt(p.shape[-1]) * 4)
    return model
