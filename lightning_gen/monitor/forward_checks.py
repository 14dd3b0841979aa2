"""What one forward of the model says, asked before training: logits or not, finite or not, which ids and which
lengths it takes. Errors name the cause and the argument to set; every monitor's probe starts here.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lightning_gen.decoding.adapters import ModelAdapter, kept_state, model_device, output_logits
from lightning_gen.decoding.generation import eval_mode
from lightning_gen.monitor._failures import PeerFailed

__all__ = ["ProbeError", "check_logits", "first_forward", "is_transient", "longest_accepted", "tiled"]


class ProbeError(ValueError):
    """The model cannot be sampled as configured; raised at the start of fit, before step 1."""


def is_transient(err: BaseException) -> bool:
    """A failure that may not come back at the next round: running out of memory (CUDA or host)."""
    name = getattr(getattr(err, "failure", None), "type_name", type(err).__name__)
    return isinstance(err, torch.OutOfMemoryError) or name == "OutOfMemoryError"


def check_logits(output: Any, *, batch: int, length: int) -> int:
    """Check one forward's output and return the vocabulary its logits cover.

    Raises:
        ProbeError: Naming what the model returned and what is expected.

    Example::

        >>> check_logits(torch.zeros(1, 4, 10), batch=1, length=4)
        10
        >>> check_logits(torch.zeros(1, 4, dtype=torch.long), batch=1, length=4)  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        lightning_gen.monitor.forward_checks.ProbeError: the model's forward returned an integer tensor of shape
        (1, 4) (token ids?); it must return float logits (B, T, V), (B, 1, V) or (B, V)
    """
    expected = "float logits (B, T, V), (B, 1, V) or (B, V)"
    logits = output
    if isinstance(output, Mapping) or (not isinstance(output, torch.Tensor) and hasattr(output, "logits")):
        keys = list(output.keys()) if isinstance(output, Mapping) else None
        logits = output.get("logits") if isinstance(output, Mapping) else output.logits
        if logits is None:
            raise ProbeError(f"the model's forward returned a mapping without 'logits' (keys {keys}); it must return "
                             f"{expected}, or a mapping / ModelOutput with 'logits'")
    elif isinstance(output, (tuple, list)) and output:
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise ProbeError(f"the model's forward returned {type(logits).__name__}; it must return {expected}")
    shape = tuple(logits.shape)
    if not logits.is_floating_point():
        raise ProbeError(f"the model's forward returned an integer tensor of shape {shape} (token ids?); it must "
                         f"return {expected}")
    if logits.dim() not in (2, 3) or shape[0] != batch or (logits.dim() == 3 and shape[1] not in (1, length)):
        raise ProbeError(f"the model's forward returned logits of shape {shape} for input ({batch}, {length}); "
                         f"expected {expected}")
    return shape[-1]


# ----------------------------------------------------------------------------------------------- forwards
def _forward(model: nn.Module, runner: ModelAdapter, ids: list[int]) -> Any:
    """One teacher-forced forward of ``ids`` through the round's adapter, as a round scores (eval, no grad, kept)."""
    inputs = torch.tensor([ids], dtype=torch.long, device=model_device(model, torch.device("cpu")))
    with torch.no_grad(), eval_mode(model), kept_state(model):
        return runner.sequence_logits(inputs)


def _runs(model: nn.Module, runner: ModelAdapter, ids: list[int]) -> bool:
    try:
        _forward(model, runner, ids)
    except (PeerFailed, torch.OutOfMemoryError):
        raise
    except Exception:  # noqa: BLE001 - a refusal is the answer sought
        return False
    return True


def _first_refused(accepts: Any, low: int, high: int) -> int:
    """The first ``n`` in ``(low, high]`` that ``accepts(n)`` refuses, knowing ``accepts(low)`` (a bisection)."""
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (middle, high) if accepts(middle) else (low, middle)
    return high


def tiled(ids: list[int], length: int) -> list[int]:
    """``ids`` repeated to ``length`` tokens (valid ids, any length)."""
    return list(itertools.islice(itertools.cycle(ids), length))


def first_forward(model: nn.Module, runner: ModelAdapter, ids: list[int], *, named: str, activity: str,
                  network: str) -> torch.Tensor:
    """Stage 1: the logits of one input's ``ids`` (``named`` in errors: "`prompts[0]` 'ab'"), tiled or cut to between
    two tokens (so that whether the model returns every position shows) and eight (a length any model takes),
    checked.

    Raises:
        ProbeError: Not logits (naming what the monitor was ``activity`` (``"sampling"``), the ``network``, and
            ``model_attr``), NaN or inf, ids the forward refuses while it runs on id 0, or a forward that fails on
            any ids.
    """
    ids = tiled(ids, min(max(2, len(ids)), 8))
    hint = f"{activity} `{network}`; if that is not the network that maps ids to logits, set `model_attr`"
    try:
        output = _forward(model, runner, ids)
    except (PeerFailed, torch.OutOfMemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - named below with its cause
        cause = f"{type(err).__name__}: {err}"
        if not _runs(model, runner, [0] * len(ids)):
            raise ProbeError(f"the model's forward failed on {named} with {cause} ({hint})") from err
        accepted = _first_refused(lambda i: _runs(model, runner, [i]), 0, max(ids) + 1)
        bad = sorted(i for i in set(ids) if i >= accepted)
        raise ProbeError(
            f"the model's forward fails on {named} with {cause}, but runs on id 0: it takes ids below {accepted} "
            f"(found by probing) and the input holds ids {bad[:5]}; does the tokenizer match the model? (set "
            "`tokenizer`, or `vocab_size`)") from err
    try:
        check_logits(output, batch=1, length=len(ids))
    except ProbeError as err:  # not logits: most often the wrong module
        raise ProbeError(f"{err} ({hint})") from None
    logits = output_logits(output)
    if not bool(torch.isfinite(logits).all()):
        raise ProbeError("the model's logits hold NaN or inf in eval mode, before training has started: its "
                         "initialisation, or a path only eval mode takes (dropout off, a cache, another dtype), "
                         "makes them; every round would fail")
    return logits


def longest_accepted(model: nn.Module, runner: ModelAdapter, ids: list[int], needed: int) -> int:
    """The longest sequence up to ``needed`` the model's forward takes (tokens tiled from ``ids``); 0 if none."""
    if _runs(model, runner, tiled(ids, needed)):
        return needed
    if not _runs(model, runner, ids[:1]):
        return 0
    return _first_refused(lambda n: _runs(model, runner, tiled(ids, n)), 1, needed) - 1
