"""The probe: one short round at the start of fit, so that what would fail every round fails before step 1.

The probe completes the shortest prompt by two tokens through the round's own path (`sample_round`: the same
adapter, processors, batching and guards), watching what the model's forward returns:

- the output's type and shape: logits `(B, T, V)`, `(B, 1, V)` or `(B, V)` as floats; not token ids, not a
  scalar, not a 4-D tensor, not a mapping without ``logits``;
- the vocabulary the logits cover, against which every prompt id and every id in the generation configuration
  (``forced_eos_token_id``, ``forced_bos_token_id``, ``bad_words_ids``, ``sequence_bias``, ``suppress_tokens``,
  ``begin_suppress_tokens``) is checked;
- the model's minimum prompt length: the shortest prompt must decode;
- whether the model returns logits for every position, which settles once, for every process, whether samples
  are scored (one teacher-forced forward of the probe's sample, as a scored round makes).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from lightning_gen.decoding.scoring import LastPositionOnlyError
from lightning_gen.monitor._failures import PeerFailed
from lightning_gen.monitor.round import sample_round, score_sample
from lightning_gen.text.samples import EncodedPrompts
from lightning_gen.text.tokenization import LoadedTokenizer

__all__ = ["ProbeError", "ProbeResult", "check_logits", "check_vocabulary", "is_transient", "probe"]


class ProbeError(ValueError):
    """The model cannot be sampled as configured; raised at the start of fit, before step 1."""


@dataclass(frozen=True)
class ProbeResult:
    """What the probe learnt: the vocabulary the logits cover, and whether samples can be scored."""

    vocab: int
    scores: bool
    why_not_scored: str | None = None


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
        >>> check_logits(torch.zeros(1, 4, dtype=torch.long), batch=1, length=4)
        Traceback (most recent call last):
        ...
        lightning_gen.monitor.probe.ProbeError: the model's forward returned an integer tensor of shape (1, 4) (token ids?); it must return float logits (B, T, V), (B, 1, V) or (B, V)
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


def _config_ids(config: GenerationConfig) -> dict[str, list[int]]:
    """Every token id the generation configuration names, by field."""
    found: dict[str, list[int]] = {}

    def flat(value: Any) -> list[int]:
        if value is None:
            return []
        if isinstance(value, int):
            return [value]
        if isinstance(value, Mapping):
            return [i for key in value for i in flat(list(key) if isinstance(key, tuple) else key)]
        return [i for item in value for i in flat(item)]

    for name in ("forced_eos_token_id", "forced_bos_token_id", "bad_words_ids", "suppress_tokens",
                 "begin_suppress_tokens"):
        found[name] = flat(getattr(config, name, None))
    bias = getattr(config, "sequence_bias", None)
    if isinstance(bias, Mapping):
        found["sequence_bias"] = flat(bias)
    elif bias:  # [[ids, bias], ...] as in HF's list form
        found["sequence_bias"] = [i for ids, _ in bias for i in flat(ids)]
    return found


def _covered(logits_vocab: int, vocab_size: int | None) -> int:
    """The ids a round can produce: the logits' width, or the model's vocabulary where the logits are padded."""
    return min(logits_vocab, vocab_size) if vocab_size is not None else logits_vocab


def check_vocabulary(vocab: int, encoded: EncodedPrompts, config: GenerationConfig) -> None:
    """Every prompt id and every id of the configuration must be in ``[0, vocab)``.

    Raises:
        ProbeError: Naming the prompt or the ``generation`` field, the ids and the vocabulary.
    """
    for i, ids in enumerate(encoded.ids):
        bad = sorted({t for t in ids if not 0 <= t < vocab})
        if bad:
            raise ProbeError(f"`prompts[{i}]` {encoded.prompts[i].text!r} encodes to ids {bad[:5]} outside the "
                             f"vocabulary the model's logits cover, [0, {vocab}); does the tokenizer match the model?")
    for name, ids in _config_ids(config).items():
        bad = sorted({t for t in ids if not 0 <= t < vocab})
        if bad:
            raise ProbeError(f"`generation.{name}` holds ids {bad[:5]} outside the vocabulary the model's logits "
                             f"cover, [0, {vocab})")


def probe(
    model: nn.Module,
    encoded: EncodedPrompts,
    tokenizer: LoadedTokenizer,
    config: GenerationConfig,
    *,
    vocab_size: int | None,
    score: bool,
    round_options: Mapping[str, Any],
    context_length: int | None = None,
) -> ProbeResult:
    """Complete the shortest prompt by two tokens as a round would, and check what the model returned.

    Args:
        vocab_size: The vocabulary the model advertises (its logits may be wider, padded); None when unknown.
        score: Whether to find out if samples can be scored (``log_metrics``).
        round_options: `sample_round`'s keyword arguments (``logits_processors``, ``all_finished`` ...).

    Raises:
        ProbeError: The model's output is not logits, ids fall outside its vocabulary, or the shortest prompt
            does not decode (naming the prompt and the cause).
        torch.OutOfMemoryError: Running out of memory, which the caller may take as transient.
    """
    if not encoded.ids:
        return ProbeResult(vocab=vocab_size or 0, scores=score)
    shortest = min(range(len(encoded.ids)), key=lambda i: len(encoded.ids[i]))
    one = EncodedPrompts([encoded.prompts[shortest]], [encoded.ids[shortest]], [], [None])
    seen: list[int] = []

    def watch(module: nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any], output: Any) -> None:
        ids = args[0] if args else kwargs.get("input_ids", kwargs.get("idx"))
        batch, length = (ids.shape[0], ids.shape[-1]) if isinstance(ids, torch.Tensor) else (1, 1)
        seen.append(check_logits(output, batch=batch, length=length))
        if len(seen) == 1:  # before any processor meets an id outside the vocabulary
            check_vocabulary(_covered(seen[0], vocab_size), encoded, config)

    # Two tokens, never stopped early by EOS: every process makes the same forwards (lockstep).
    short = copy.deepcopy(config)
    short.max_new_tokens, short.min_new_tokens, short.num_return_sequences = 2, 2, 1
    handle = model.register_forward_hook(watch, with_kwargs=True)
    try:
        pairs = sample_round(model, one, tokenizer, short, seed=0, batch_size=1, **round_options)
    except Exception as err:
        if isinstance(err, (ProbeError, PeerFailed)) or is_transient(err):
            raise
        raise ProbeError(f"the probe (`prompts[{shortest}]` {one.prompts[0].text!r}, the shortest prompt at "
                         f"{len(one.ids[0])} tokens, completed by 2 tokens as a round runs) failed with "
                         f"{type(err).__name__}: {err}") from err
    finally:
        handle.remove()
    vocab = _covered(seen[0], vocab_size) if seen else vocab_size
    if not score:
        return ProbeResult(vocab=vocab or 0, scores=False)
    # Scored as a round scores: through the adapter the round samples with, within the same context.
    adapter = round_options.get("adapter")
    context = context_length or (adapter.context_length if adapter is not None else None)
    try:
        score_sample(model, one, 0, pairs[0][1].completion_ids, context, adapter)
    except LastPositionOnlyError:
        return ProbeResult(vocab=vocab or 0, scores=False,
                           why_not_scored="the model returns logits for the last position only (nanoGPT-style)")
    except Exception as err:  # noqa: BLE001 - not scorable is not an error: the other scalars are still logged
        return ProbeResult(vocab=vocab or 0, scores=False, why_not_scored=f"{type(err).__name__}: {err}")
    return ProbeResult(vocab=vocab or 0, scores=True)
