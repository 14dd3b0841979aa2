"""Log-likelihoods of continuations given contexts, many requests per forward: lm-eval's ``loglikelihood`` on ids.

For each request ``(context_ids, continuation_ids)``: the summed log-probability of the continuation's tokens,
each given every token before it, and whether each of them is the model's greedy (argmax) choice. These are the
numbers lm-evaluation-harness's ``HFLM._loglikelihood_tokens`` computes with ``logits_cache=False``: a request
longer than the context keeps its last ``context_length + 1`` tokens, ``(context + continuation)[-(L + 1):]``,
and feeds all but the last; the log-softmax runs over every logit the model returns (a padded vocabulary
included), in float32 at least (lm-eval's runs in the logits' dtype, so half-precision models differ slightly).
lm-eval's default ``logits_cache=True`` reuses one forward for requests that share ``context + continuation[:-1]``
and reads a shorter continuation from the wrong positions; here a request is only ever read from positions that
hold its own tokens' logits, so every request equals its own forward.

How requests share work, cheapest first:

1. A request whose input is a prefix of another's is read from that one's forward (a causal model's logits at a
   position depend on the tokens up to it only): the choices of a one-token multiple-choice question cost one row.
2. Rows that share everything before their first scored position (the choices of a question) run that prefix
   once, where the protocol allows: a transformers model with a dynamic KV cache (`_shared_prefix`).
3. The rest are batched longest first and right-padded (positions after a row's end cannot change its logits),
   up to ``batch_size`` rows or `BATCH_TOKENS` padded tokens per forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from lightning_gen._checks import check_int
from lightning_gen.decoding import _shared_prefix
from lightning_gen.decoding.adapters import (
    AdapterName,
    ModelAdapter,
    find_context_length,
    model_device,
    output_logits,
    resolve_adapter,
)
from lightning_gen.decoding.generation import eval_mode
from lightning_gen.decoding.scoring import LastPositionOnlyError, check_scorable

__all__ = ["BATCH_TOKENS", "context_window", "loglikelihood_tokens", "scoring_adapter"]

#: Padded tokens per forward when no ``batch_size`` is given: large enough that a small model's forward is not
#: dominated by Python, small enough that the logits of a 128k vocabulary stay near 1 GB in float32.
BATCH_TOKENS = 2048


def context_window(
    context_ids: Sequence[int], continuation_ids: Sequence[int], context_length: int | None
) -> tuple[tuple[int, ...], int]:
    """The forward's input for one request and how many of its last positions are scored: lm-eval's window
    ``(context + continuation)[-(L + 1):][:-1]``, the continuation's ``c`` tokens predicted by its last ``c``
    positions.

    Example::

        >>> context_window([1, 2, 3, 4], [5, 6], 3)   # input (3, 4, 5): 4 predicts 5, 5 predicts 6
        ((3, 4, 5), 2)
    """
    ids = (*context_ids, *continuation_ids)
    if context_length is not None:
        ids = ids[-(context_length + 1):]
    return ids[:-1], len(continuation_ids)


def scoring_adapter(
    model: nn.Module,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    *,
    context_length: int | None = None,
) -> tuple[ModelAdapter, int | None]:
    """The adapter that scores ``model`` and the context length requests are cut to: ``context_length``, else
    the adapter's, else what the model advertises (``config.n_positions`` ..., as lm-eval reads a transformers
    model's); None when nothing says.

    Example::

        >>> runner, limit = scoring_adapter(nn.Linear(2, 2), context_length=16)
        >>> type(runner).__name__, limit
        ('PlainAdapter', 16)
    """
    check_int("context_length", context_length, allow_none=True)
    runner = resolve_adapter(model, adapter, context_length=context_length)
    return runner, context_length or runner.context_length or find_context_length(runner.model)


@dataclass
class _Row:
    """One sequence that goes through the model, and the requests read from its logits."""

    ids: tuple[int, ...]
    start: int  # the first position whose logits a request needs
    requests: list[int] = field(default_factory=list)


def _check_requests(requests: Sequence[tuple[Sequence[int], Sequence[int]]], context_length: int | None) -> None:
    for i, request in enumerate(requests):
        if not (isinstance(request, (tuple, list)) and len(request) == 2):
            raise TypeError(f"`requests[{i}]` must be a pair (context_ids, continuation_ids), got {request!r}")
        context, continuation = request
        if len(context) == 0 or len(continuation) == 0:
            raise ValueError(f"`requests[{i}]` needs at least one context and one continuation token, got "
                             f"{len(context)} and {len(continuation)}")
        if context_length is not None and len(continuation) > context_length:
            raise ValueError(f"`requests[{i}]` has {len(continuation)} continuation tokens, more than the context "
                             f"length {context_length}: they cannot all be scored in one window")


def _rows(windows: Sequence[tuple[tuple[int, ...], int]]) -> list[_Row]:
    """The inputs to run: each request's, unless it is a prefix of another's, which then serves it too."""
    order = sorted(range(len(windows)), key=lambda i: windows[i][0])
    rows: list[_Row] = []
    # In sorted order a sequence that is a prefix of any other is a prefix of the one right after it (all between
    # share it), so walking from the end absorbs each into the longest that contains it.
    for i in reversed(order):
        ids, scored = windows[i]
        if rows and rows[-1].ids[:len(ids)] == ids:
            row = rows[-1]
            row.start = min(row.start, len(ids) - scored)
        else:
            row = _Row(ids, len(ids) - scored)
            rows.append(row)
        row.requests.append(i)
    return rows


def _batches(sizes: Sequence[tuple[int, int]], batch_size: int | None) -> list[list[int]]:
    """Consecutive runs of items ``(rows, tokens per row)`` that fit one forward: at most ``batch_size`` rows, or
    without it at most `BATCH_TOKENS` once every row is padded to the longest (one item at least)."""
    batches: list[list[int]] = []
    rows = width = 0
    for i, (count, length) in enumerate(sizes):
        if batch_size is not None:
            fits = rows + count <= batch_size
        else:
            fits = (rows + count) * max(width, length) <= BATCH_TOKENS
        if batches and fits:
            batches[-1].append(i)
            rows, width = rows + count, max(width, length)
        else:
            batches.append([i])
            rows, width = count, length
    return batches


def loglikelihood_tokens(
    model: nn.Module,
    requests: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    batch_size: int | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
    share_prefixes: bool = True,
    all_finished: Callable[[bool], bool] | None = None,
) -> list[tuple[float, bool]]:
    """``(log-likelihood, is_greedy)`` of each ``(context_ids, continuation_ids)``, as lm-eval's ``loglikelihood``.

    The model runs in eval mode under `torch.no_grad`; afterwards every submodule's mode and the model's buffers,
    submodules and cache sizes are as they were (as `~lightning_gen.generate` leaves them).

    Args:
        model: Any module returning logits for every position, called through its adapter
            (`~lightning_gen.decoding.adapters.ModelAdapter.sequence_logits`).
        requests: Token ids; each context and continuation holds at least one token.
        batch_size: Most rows per forward; None fits as many as `BATCH_TOKENS` padded tokens allow.
        adapter: How to call the model (see `~lightning_gen.generate`); detected by default.
        context_length: Most tokens the model takes; by default the adapter's, else what the model advertises
            (``config.n_positions`` ...). Longer requests are cut from the left as lm-eval cuts them; with no
            context length known nothing is cut.
        share_prefixes: Run a context shared by several requests once, where the protocol allows (a transformers
            model with a dynamic KV cache); False feeds every row whole.
        all_finished: For sharded models whose forward is a collective (FSDP, DeepSpeed stage 3): receives
            whether this process has run all its batches and returns whether every process has (an all-reduce);
            a process that is done keeps calling the model on one token until all are, so all make the same number
            of forwards.

    Returns:
        One ``(sum of the continuation's log-probabilities, whether every continuation token is the argmax)`` per
        request, in order.

    Raises:
        ValueError: An empty context or continuation, a continuation longer than the context length, a token id
            outside the logits, or a model that returns the last position's logits only.

    Example::

        >>> class Uniform(nn.Module):
        ...     def forward(self, ids):   # (B, T) -> (B, T, V): each token has probability 1/4, token 0 the argmax
        ...         return torch.zeros(*ids.shape, 4)
        >>> [(round(logprob, 4), greedy) for logprob, greedy in loglikelihood_tokens(Uniform(), [([1, 2], [0, 0])])]
        [(-2.7726, True)]
    """
    check_int("batch_size", batch_size, allow_none=True)
    runner, limit = scoring_adapter(model, adapter, context_length=context_length)
    _check_requests(requests, limit)
    windows = [context_window(context, continuation, limit) for context, continuation in requests]
    targets = [tuple(continuation) for _, continuation in requests]
    rows = _rows(windows)
    prefixed = _shared_prefix.applies(runner) if share_prefixes else False
    plans = _plan(rows, batch_size, prefixed)
    device = model_device(runner.model, torch.device("cpu"))
    results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    with torch.no_grad(), eval_mode(model), runner.kept():
        step = 0
        while True:
            done = step >= len(plans)
            if all_finished(done) if all_finished is not None else done:
                break
            if done:
                runner.sequence_logits(torch.zeros((1, 1), dtype=torch.long, device=device))  # in lockstep
                continue
            kind, members = plans[step]
            step += 1
            if kind == "prefix":
                logits, base = _shared_prefix.forward(runner, [rows[r] for r in members], device)
            else:
                logits, base = _forward(runner, [rows[r] for r in members], device)
            _score(logits, base, [rows[r] for r in members], windows, targets, results)
    return results


def _plan(rows: list[_Row], batch_size: int | None, prefixed: bool) -> list[tuple[str, list[int]]]:
    """The forwards to run, each ``("prefix" | "plain", row indices)``, longest first."""
    plain = list(range(len(rows)))
    plans: list[tuple[str, list[int]]] = []
    if prefixed:
        groups, plain = _shared_prefix.groups(rows)
        groups.sort(key=lambda g: -rows[g[0]].start)
        sizes = [(len(g), _shared_prefix.width(rows, g)) for g in groups]
        plans += [("prefix", [r for i in batch for r in groups[i]]) for batch in _batches(sizes, batch_size)]
    plain.sort(key=lambda r: -len(rows[r].ids))
    sizes = [(1, len(rows[r].ids)) for r in plain]
    plans += [("plain", [plain[i] for i in batch]) for batch in _batches(sizes, batch_size)]
    return plans


def _forward(runner: ModelAdapter, rows: list[_Row], device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """Right-padded rows through the model: logits `(B * T, V)` and each row's offset (position p is base + p)."""
    width = max(len(row.ids) for row in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T); pad id 0 as lm-eval's, never read
    for b, row in enumerate(rows):
        ids[b, :len(row.ids)] = torch.tensor(row.ids)
    logits = output_logits(runner.sequence_logits(ids.to(device)))
    if logits.dim() != 3 or logits.shape[:2] != ids.shape:
        if width > 1 and (logits.dim() == 2 or (logits.dim() == 3 and logits.shape[1] == 1)):
            raise LastPositionOnlyError(
                f"log-likelihoods need logits for every position (B, T, V) with T={width}, but the model returned "
                f"only the last position's, shape {tuple(logits.shape)}; pass an adapter whose `sequence_logits` "
                "returns every position")
        raise ValueError(f"the model's logits must have shape {tuple(ids.shape)} + (V,), got {tuple(logits.shape)}")
    return logits.reshape(-1, logits.shape[-1]), [b * width for b in range(len(rows))]


def _score(logits: torch.Tensor, base: list[int], rows: list[_Row], windows: Sequence[tuple[tuple[int, ...], int]],
           targets: Sequence[tuple[int, ...]], results: list[tuple[float, bool]]) -> None:
    """Sum each request's target log-probabilities from the positions that predict them, and check the argmax."""
    positions: list[int] = []
    tokens: list[int] = []
    owners: list[int] = []
    requests: list[int] = []
    for row, offset in zip(rows, base):
        for request in row.requests:
            end = len(windows[request][0])
            scored = len(targets[request])
            positions += range(offset + end - scored, offset + end)
            tokens += targets[request]
            owners += [len(requests)] * scored
            requests.append(request)
    check_scorable(tokens, logits.shape[-1])
    device = logits.device
    chosen = logits[torch.tensor(positions, device=device)]  # (M, V): one row per scored token
    chosen = chosen.to(torch.promote_types(chosen.dtype, torch.float32))  # half precision is summed in float32
    target = torch.tensor(tokens, device=device)  # (M,)
    logprobs = torch.log_softmax(chosen, dim=-1).gather(-1, target[:, None]).squeeze(-1)  # (M,)
    missed = (chosen.argmax(dim=-1) != target).float()  # (M,) 1 where the greedy token is another
    owner = torch.tensor(owners, device=device)
    sums = torch.zeros(len(requests), device=device).index_add_(0, owner, logprobs)
    misses = torch.zeros(len(requests), device=device).index_add_(0, owner, missed)
    for request, total, miss in zip(requests, sums.tolist(), misses.tolist()):  # the one host sync per batch
        results[request] = (total, miss == 0)
