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

__all__ = [
    "DistributedMode",
    "all_finished_fn",
    "choose_mode",
    "gather_to_zero",
    "is_fsdp1",
    "is_sharded",
    "run_everywhere",
]

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


def run_everywhere(strategy: Any, mode: str, fn: Callable[[], list[Any]], *, is_global_zero: bool) -> list[Any]:
    """Run one round's ``fn`` on the processes ``mode`` needs and collect its items on global rank 0.

    ``"single"`` and ``"lockstep"``: every process runs ``fn`` (in lockstep each one has every item; rank 0's
    are used). ``"shard"``: every process runs ``fn`` on its share and rank 0 receives all shares.
    ``"rank_zero"``: only rank 0 runs ``fn``. A failure on any process is raised on every process, after the
    collectives, so that none is left waiting in one.

    Returns:
        The items on global rank 0 (all shares concatenated in rank order), an empty list elsewhere.
    """
    mine: list[Any] | BaseException = []
    try:
        if mode != "rank_zero" or is_global_zero:
            mine = fn()
    except Exception as err:  # noqa: BLE001 - shared below, so every process fails together
        mine = err
    if mode in ("shard", "rank_zero"):
        gathered = gather_to_zero(strategy, mine)
        failure = next((r for r in gathered or [] if isinstance(r, BaseException)), None)
        message = strategy.broadcast(f"{type(failure).__name__}: {failure}" if failure is not None else None)
        if isinstance(mine, BaseException):
            raise mine
        if message is not None:
            raise RuntimeError(f"sampling failed on another process: {message}")
        return [item for part in gathered or [] for item in part]
    if isinstance(mine, BaseException):
        raise mine
    return mine if is_global_zero else []
