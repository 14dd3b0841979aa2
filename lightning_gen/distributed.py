"""How a sampling round is spread over processes, with Lightning's strategy as the only engine.

Data-parallel strategies (DDP and friends) hold the whole model on every process, so each process runs its
share of the prompt batches and the samples are gathered to global rank 0. Sharded strategies (FSDP, FSDP2 /
ModelParallel, DeepSpeed stage 3) turn every forward into a collective, so every process must run the same
forwards: all processes decode all batches in lockstep, stopping together (HF's ``synced_gpus``).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any, Literal

import torch

__all__ = ["DistributedMode", "all_finished_fn", "choose_mode", "gather_to_zero", "is_fsdp1", "is_sharded"]

DistributedMode = Literal["auto", "shard", "lockstep", "rank_zero"]


def is_fsdp1(strategy: Any) -> bool:
    """Lightning's `FSDPStrategy` (FSDP1), whose root module must be called for its parameters to gather."""
    return type(strategy).__name__ == "FSDPStrategy"


def is_sharded(strategy: Any) -> bool:
    """Whether the strategy shards parameters, so that every forward is a collective."""
    name = type(strategy).__name__
    if name in ("FSDPStrategy", "ModelParallelStrategy"):
        return True
    return name == "DeepSpeedStrategy" and bool(getattr(strategy, "zero_stage_3", False))


def choose_mode(strategy: Any, requested: DistributedMode) -> Literal["single", "shard", "lockstep", "rank_zero"]:
    """The mode a round runs in: ``"single"`` for one process, else ``requested`` or the automatic choice."""
    if strategy.world_size <= 1:
        return "single"
    if requested != "auto":
        return requested
    return "lockstep" if is_sharded(strategy) else "shard"


def gather_to_zero(strategy: Any, obj: Any) -> list[Any] | None:
    """Every process's ``obj`` on global rank 0 (in rank order), None elsewhere; sizes may differ.

    Objects travel as pickled bytes in a padded uint8 tensor through ``strategy.all_gather``, which every
    Lightning strategy implements for its own backend (gloo, NCCL ...).
    """
    payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(strategy.root_device)
    sizes = strategy.all_gather(torch.tensor([payload.numel()], device=strategy.root_device)).reshape(-1)
    padded = torch.zeros(int(sizes.max()), dtype=torch.uint8, device=strategy.root_device)
    padded[: payload.numel()] = payload
    everyone = strategy.all_gather(padded).reshape(len(sizes), -1).cpu()
    if strategy.global_rank != 0:
        return None
    return [pickle.loads(everyone[r, : int(sizes[r])].numpy().tobytes()) for r in range(len(sizes))]  # noqa: S301


def all_finished_fn(strategy: Any) -> Callable[[bool], bool]:
    """The lockstep collective for `generate`: True once no process has an unfinished row."""

    def all_finished(done: bool) -> bool:
        unfinished = torch.tensor(0.0 if done else 1.0, device=strategy.root_device)
        return float(strategy.reduce(unfinished, reduce_op="sum")) == 0.0

    return all_finished
