"""Build the logits processors and stopping criteria for a configuration, in Hugging Face's order.

This mirrors `GenerationMixin._get_logits_processor` / `_get_stopping_criteria` for decoder-only models, using
transformers' own public processor classes so the arithmetic is theirs: penalties, n-gram and bad-word bans,
minimum lengths, forced and suppressed tokens first; then the user's processors merged in (a user processor of
the same class replaces the built one, in place); then, only when sampling, the warpers temperature → top-h →
top-k → top-p → min-p → typical → epsilon → eta; `LogitNormalization` last.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation import logits_process as lp
from transformers.generation import stopping_criteria as sc

__all__ = ["build_logits_processors", "build_stopping_criteria", "merge_user_list", "penalty_skips_padding"]


def merge_user_list(defaults: list[Any], custom: Sequence[Any] | None) -> list[Any]:
    """Merge user processors/criteria into the built ones as HF does.

    A custom object whose class equals a built one's takes that one's place; the rest are appended in order.
    """
    if not custom:
        return list(defaults)
    merged = [next((c for c in custom if type(c) is type(d)), d) for d in defaults]
    merged += [c for c in custom if c not in merged]
    return merged


def build_logits_processors(
    cfg: GenerationConfig,
    *,
    eos: torch.Tensor | None,
    prompt_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    user_processors: Sequence[Any] | None,
    device: torch.device,
) -> lp.LogitsProcessorList:
    """The processor chain HF's `generate` would build for ``cfg``.

    Args:
        cfg: A resolved configuration (``max_length``/``min_length`` already final).
        eos: End-of-sequence ids (1-D) or None.
        prompt_ids: The prompt before `num_return_sequences` expansion; HF's encoder-side processors read it.
        attention_mask: The expanded prompt mask when the batch is padded, else None; the repetition
            penalty then ignores each row's left padding, as in HF.
        user_processors: Extra processors, merged the HF way.
        device: Device of the scores.
    """
    prompt_length = prompt_ids.shape[1]
    out: list[Any] = []
    if cfg.sequence_bias is not None:
        out.append(lp.SequenceBiasLogitsProcessor(sequence_bias=cfg.sequence_bias))
    if cfg.encoder_repetition_penalty is not None and cfg.encoder_repetition_penalty != 1.0:
        out.append(lp.EncoderRepetitionPenaltyLogitsProcessor(cfg.encoder_repetition_penalty, prompt_ids))
    if cfg.repetition_penalty is not None and cfg.repetition_penalty != 1.0:
        out.append(_repetition_penalty(cfg.repetition_penalty, attention_mask))
    if cfg.no_repeat_ngram_size:
        out.append(lp.NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    if cfg.encoder_no_repeat_ngram_size:
        out.append(lp.EncoderNoRepeatNGramLogitsProcessor(cfg.encoder_no_repeat_ngram_size, prompt_ids))
    if cfg.bad_words_ids is not None:
        out.append(lp.NoBadWordsLogitsProcessor(cfg.bad_words_ids, eos))
    if cfg.min_length and eos is not None:
        out.append(lp.MinLengthLogitsProcessor(cfg.min_length, eos, device=device))
    if cfg.min_new_tokens and eos is not None:
        out.append(lp.MinNewTokensLengthLogitsProcessor(prompt_length, cfg.min_new_tokens, eos, device=device))
    if cfg.forced_bos_token_id is not None:
        out.append(lp.ForcedBOSTokenLogitsProcessor(cfg.forced_bos_token_id))
    if cfg.forced_eos_token_id is not None:
        out.append(lp.ForcedEOSTokenLogitsProcessor(cfg.max_length, cfg.forced_eos_token_id, device=device))
    if cfg.remove_invalid_values is True:
        out.append(lp.InfNanRemoveLogitsProcessor())
    if cfg.exponential_decay_length_penalty is not None:
        out.append(lp.ExponentialDecayLengthPenalty(cfg.exponential_decay_length_penalty, eos, prompt_length))
    if cfg.suppress_tokens is not None:
        out.append(lp.SuppressTokensLogitsProcessor(cfg.suppress_tokens, device=device))
    if cfg.begin_suppress_tokens is not None:
        begin = prompt_length if (prompt_length > 1 or cfg.forced_bos_token_id is None) else prompt_length + 1
        out.append(lp.SuppressTokensAtBeginLogitsProcessor(cfg.begin_suppress_tokens, begin, device=device))
    out = merge_user_list(out, user_processors)

    if cfg.do_sample:
        if cfg.temperature is not None and cfg.temperature != 1.0:
            out.append(lp.TemperatureLogitsWarper(cfg.temperature))
        if cfg.top_h is not None:
            out.append(lp.TopHLogitsWarper(top_h=cfg.top_h))
        if cfg.top_k is not None and cfg.top_k != 0:
            out.append(lp.TopKLogitsWarper(top_k=cfg.top_k, min_tokens_to_keep=1))
        if cfg.top_p is not None and cfg.top_p < 1.0:
            out.append(lp.TopPLogitsWarper(top_p=cfg.top_p, min_tokens_to_keep=1))
        if cfg.min_p is not None:
            out.append(lp.MinPLogitsWarper(min_p=cfg.min_p, min_tokens_to_keep=1))
        if cfg.typical_p is not None and cfg.typical_p < 1.0:
            out.append(lp.TypicalLogitsWarper(mass=cfg.typical_p, min_tokens_to_keep=1))
        if cfg.epsilon_cutoff is not None and 0.0 < cfg.epsilon_cutoff < 1.0:
            out.append(lp.EpsilonLogitsWarper(epsilon=cfg.epsilon_cutoff, min_tokens_to_keep=1))
        if cfg.eta_cutoff is not None and 0.0 < cfg.eta_cutoff < 1.0:
            out.append(lp.EtaLogitsWarper(epsilon=cfg.eta_cutoff, min_tokens_to_keep=1, device=device))
    if cfg.renormalize_logits is True:
        out.append(lp.LogitNormalization())
    return lp.LogitsProcessorList(out)


def build_stopping_criteria(
    cfg: GenerationConfig,
    *,
    eos: torch.Tensor | None,
    tokenizer: Any,
    user_criteria: Sequence[Any] | None,
    max_position_embeddings: int | None,
) -> sc.StoppingCriteriaList:
    """The stopping criteria HF's `generate` would build: max length, max time, stop strings, EOS.

    Raises:
        ValueError: ``stop_strings`` is set but no Hugging Face tokenizer was given.
    """
    out: list[Any] = [sc.MaxLengthCriteria(max_length=cfg.max_length, max_position_embeddings=max_position_embeddings)]
    if cfg.max_time is not None:
        out.append(sc.MaxTimeCriteria(max_time=cfg.max_time))
    if cfg.stop_strings is not None:
        if tokenizer is None:
            raise ValueError(
                f"`stop_strings`={cfg.stop_strings!r} needs `tokenizer`: pass the Hugging Face tokenizer "
                "(a PreTrainedTokenizerBase) as `tokenizer=`"
            )
        out.append(sc.StopStringCriteria(stop_strings=cfg.stop_strings, tokenizer=tokenizer))
    if eos is not None:
        out.append(sc.EosTokenCriteria(eos_token_id=eos))
    return sc.StoppingCriteriaList(merge_user_list(out, user_criteria))


@functools.cache
def penalty_skips_padding() -> bool:
    """Whether the installed transformers' repetition penalty takes each row's padding length, as its `generate`
    passes it (older 5.x releases take one ``int`` and penalise the padding)."""
    try:
        lp.RepetitionPenaltyLogitsProcessor(1.5, prompt_ignore_length=torch.tensor([1]))
    except ValueError:  # "`prompt_ignore_length` has to be a positive integer"
        return False
    return True


def _repetition_penalty(penalty: float, attention_mask: torch.Tensor | None) -> lp.RepetitionPenaltyLogitsProcessor:
    """HF's repetition penalty, skipping each row's left padding where the installed transformers does."""
    if attention_mask is not None and penalty_skips_padding():
        padding = (attention_mask != 0).int().argmax(dim=1)
        return lp.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=padding)
    return lp.RepetitionPenaltyLogitsProcessor(penalty)
