"""Sampling rounds on several processes, with the trainer's strategy as the only engine.

Data-parallel strategies (DDP and friends) hold the whole model on every process, so each process runs its
share of the prompt batches and the samples are gathered to global rank 0 (``"shard"``). Sharded strategies
(FSDP, FSDP2 / ModelParallel, DeepSpeed stage 3) turn every forward into a collective: either the full
parameters are gathered once for the round and each process then decodes its share alone (``"gather"``: FSDP1,
FSDP2 and DeepSpeed stage 3, see `_gather`), or all processes decode all batches in lockstep, stopping together
(``"lockstep"``, HF's ``synced_gpus``).

Every decision that leads into a collective is made collectively, and a failure on any process reaches every
process through the collective it is already in: in lockstep the per-token vote carries a "failed" flag, and
every round ends with one exchange in which each process sends its items or its failure (as plain data, see
`_failures`). So all processes leave a round together, and none is left waiting in a collective.
"""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

from lightning_gen.monitor._failures import Failure, PeerFailed, RemoteFailure

__all__ = [
    "DistributedMode",
    "LockstepVote",
    "RoundMode",
    "choose_mode",
    "count_collectives",
    "gather_to_zero",
    "is_fsdp1",
    "is_sharded",
    "run_everywhere",
]

DistributedMode = Literal["auto", "shard", "gather", "lockstep", "rank_zero"]
RoundMode = Literal["single", "shard", "gather", "lockstep", "rank_zero"]


def is_fsdp1(strategy: Any) -> bool:
    """Lightning's `FSDPStrategy` (FSDP1, or a subclass), whose root module must be called for its parameters to
    gather."""
    return isinstance(strategy, FSDPStrategy)


def is_sharded(strategy: Any) -> bool:
    """Whether the strategy shards parameters, so that every forward is a collective (subclasses included)."""
    if isinstance(strategy, (FSDPStrategy, ModelParallelStrategy)):
        return True
    return isinstance(strategy, DeepSpeedStrategy) and bool(getattr(strategy, "zero_stage_3", False))


def choose_mode(strategy: Any, requested: DistributedMode, *, can_gather: bool = False) -> RoundMode:
    """The mode a round runs in: ``"single"`` for one process, else ``requested`` or the automatic choice.

    ``can_gather`` says (decided collectively by the caller) whether the full parameters can be gathered for a
    round: ``"auto"`` then picks ``"gather"`` on a sharded strategy, else ``"lockstep"``.

    Raises:
        ValueError: ``"rank_zero"`` on a sharded strategy (only rank 0 calling a collective forward hangs), or
            ``"gather"`` where the parameters cannot be gathered.
    """
    if strategy.world_size <= 1:
        return "single"
    sharded = is_sharded(strategy)
    if requested == "rank_zero" and sharded:
        raise ValueError(
            f"`distributed`='rank_zero' cannot work with {type(strategy).__name__}: it shards the parameters, so "
            "every forward is a collective that all processes must join; use 'auto', 'gather' or 'lockstep'"
        )
    if requested == "gather":
        if not sharded:
            return "shard"  # every process holds the whole model already: nothing to gather
        if not can_gather:
            raise ValueError(
                "`distributed`='gather' needs parameters it can gather: FSDP1 units under FSDPStrategy, FSDP2 "
                "(`fully_shard`) modules with no tensor parallelism under ModelParallelStrategy, or ZeRO stage 3 "
                f"parameters under DeepSpeedStrategy; {type(strategy).__name__} with this model cannot gather; use "
                "'lockstep'"
            )
        return "gather"
    if requested != "auto":
        return requested
    if sharded:
        return "gather" if can_gather else "lockstep"
    return "shard"


def _as_payload(obj: Any, rank: int) -> bytes:
    try:
        return pickle.dumps(obj)
    except Exception as err:  # noqa: BLE001 - an unpicklable item must not leave rank 0 waiting
        return pickle.dumps(Failure.of(err, rank=rank))


def gather_to_zero(strategy: Any, obj: Any) -> list[Any] | None:
    """Every process's ``obj`` on global rank 0 (in rank order), None elsewhere; sizes may differ.

    Objects travel as pickled bytes in a padded uint8 tensor through ``strategy.all_gather``, which every
    Lightning strategy implements for its own backend (gloo, NCCL ...). An object that does not pickle, or
    does not unpickle on rank 0, arrives as a `Failure` instead, so every process makes the same two calls.
    """
    rank = strategy.global_rank
    payload = torch.frombuffer(bytearray(_as_payload(obj, rank)), dtype=torch.uint8).to(strategy.root_device)
    sizes = strategy.all_gather(torch.tensor([payload.numel()], device=strategy.root_device)).reshape(-1)
    padded = torch.zeros(int(sizes.max()), dtype=torch.uint8, device=strategy.root_device)
    padded[: payload.numel()] = payload
    everyone = strategy.all_gather(padded).reshape(len(sizes), -1).cpu()
    if rank != 0:
        return None
    out = []
    for r in range(len(sizes)):
        try:
            out.append(pickle.loads(everyone[r, : int(sizes[r])].numpy().tobytes()))  # noqa: S301 - our own ranks
        except Exception as err:  # noqa: BLE001
            out.append(Failure.of(err, rank=r))
    return out


# Strategies whose collectives are torch.distributed's, on the default (world) process group.
_TORCH_DISTRIBUTED = (DDPStrategy, FSDPStrategy, ModelParallelStrategy, DeepSpeedStrategy)


class LockstepVote:
    """The per-token collective of lockstep decoding, carrying a "failed" flag beside "not finished".

    Called as `generate`'s ``all_finished``: each step every process all-reduces ``[unfinished, failed]``. A
    process that fails calls `finish` with ``failed=True``, which meets the others' next vote (or their own
    `finish`), so they raise too and every process leaves the round at the same collective.
    """

    def __init__(self, strategy: Any) -> None:
        self._strategy = strategy
        self.failure_seen = False
        self.calls = 0

    def _reduce(self, unfinished: float, failed: float) -> tuple[float, float]:
        self.calls += 1
        vote = torch.tensor([unfinished, failed], device=self._strategy.root_device)
        if isinstance(self._strategy, _TORCH_DISTRIBUTED) and torch.distributed.is_initialized():
            # The world group, as `strategy.reduce` uses, without the barrier Lightning puts before each reduce:
            # one collective per token instead of two.
            torch.distributed.all_reduce(vote)
            total = vote.tolist()
        else:
            total = self._strategy.reduce(vote, reduce_op="sum").tolist()
        if total[1] > 0:
            self.failure_seen = True
        return total[0], total[1]

    def __call__(self, done: bool) -> bool:
        unfinished, failed = self._reduce(0.0 if done else 1.0, 0.0)
        if failed:
            raise PeerFailed("another process failed while decoding in lockstep")
        return unfinished == 0

    def finish(self, *, failed: bool) -> None:
        """The last vote of a round: matches the others' last vote, or the vote they are waiting in."""
        if not self.failure_seen:
            self._reduce(0.0, 1.0 if failed else 0.0)


def _first_failure(outcomes: list[Any]) -> Failure | None:
    failures = [o for o in outcomes if isinstance(o, Failure)]
    real = [f for f in failures if f.type_name != PeerFailed.__name__]
    return (real or failures or [None])[0]


def run_everywhere(
    strategy: Any, mode: RoundMode, fn: Callable[[LockstepVote | None], list[Any]], *, is_global_zero: bool
) -> list[Any]:
    """Run one round's ``fn`` on the processes ``mode`` needs and collect its items on global rank 0.

    ``"single"``: ``fn`` runs here. ``"lockstep"``: every process runs ``fn`` with a `LockstepVote` (each one
    has every item; rank 0's are used). ``"shard"`` and ``"gather"``: every process runs ``fn`` on its share and
    rank 0 receives all shares. ``"rank_zero"``: only rank 0 runs ``fn``. Then every process sends its items or
    its failure to rank 0, which broadcasts the first failure, so a failure anywhere is raised everywhere: the
    original exception where it happened, a `RemoteFailure` elsewhere.

    Returns:
        The items on global rank 0 (all shares concatenated in rank order), an empty list elsewhere.
    """
    if mode == "single":
        return fn(None)
    vote = LockstepVote(strategy) if mode == "lockstep" else None
    mine: list[Any] = []
    error: BaseException | None = None
    try:
        if mode != "rank_zero" or is_global_zero:
            mine = fn(vote)
    except Exception as err:  # noqa: BLE001 - shared below, so every process fails together
        error = err
    if vote is not None:
        vote.finish(failed=error is not None)
    rank = strategy.global_rank
    sent: Any = Failure.of(error, rank=rank) if error is not None else (mine if mode in ("shard", "gather") else None)
    gathered = gather_to_zero(strategy, sent)
    failure = strategy.broadcast(_first_failure(gathered) if gathered is not None else None)
    if error is not None and not isinstance(error, PeerFailed):
        raise error
    if failure is None and error is not None:  # unreachable: the process that failed sent its failure
        failure = Failure.of(error, rank=rank)
    if failure is not None:
        raise RemoteFailure(failure)
    if not is_global_zero:
        return []
    if mode in ("shard", "gather"):
        return [item for part in gathered for item in part]
    return mine


_COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_single", "all_gather_object",
                "broadcast", "broadcast_object_list", "reduce_scatter_tensor", "reduce_scatter_single", "reduce",
                "gather", "scatter", "barrier", "all_to_all_single")


@contextmanager
def count_collectives() -> Iterator[Counter]:
    """Count the calls of `torch.distributed`'s collectives made in the block, by name (a diagnostic for tests and
    benchmarks: FSDP2's all-gathers, Lightning's reduce / all_gather / broadcast all go through these names).

    Example::

        >>> with count_collectives() as counts:
        ...     pass
        >>> sum(counts.values())
        0
    """
    import torch.distributed as dist

    counts: Counter = Counter()
    originals = {name: getattr(dist, name) for name in _COLLECTIVES if hasattr(dist, name)}

    def counting(name: str, fn: Callable) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return fn(*args, **kwargs)

        return call

    for name, fn in originals.items():
        setattr(dist, name, counting(name, fn))
    try:
        yield counts
    finally:
        for name, fn in originals.items():
            setattr(dist, name, fn)
