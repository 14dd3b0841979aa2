"""The data that flows through a round: a prompt, its tokens, and the sample the model wrote for it.

Plain dataclasses, no torch: every layer (decoding results, the monitor, the views) speaks these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EncodedPrompts", "Prompt", "Sample"]


@dataclass(frozen=True)
class Prompt:
    """One monitored prompt.

    Attributes:
        text: The prompt text, fed to the model as is.
        reference: An optional reference continuation (shown beside the completion).
    """

    text: str
    reference: str | None = None


@dataclass(frozen=True)
class EncodedPrompts:
    """Prompts with their token ids, ready for every round.

    Attributes:
        prompts: The prompts.
        ids: Token ids of each prompt, cropped from the left to fit the context.
        cropped: Indices of the prompts that were cropped.
        references: Token ids of each prompt's reference continuation, or None.
    """

    prompts: list[Prompt]
    ids: list[list[int]]
    cropped: list[int]
    references: list[list[int] | None] = field(default_factory=list)

    def __add__(self, other: EncodedPrompts) -> EncodedPrompts:
        offset = len(self.ids)
        return EncodedPrompts(self.prompts + other.prompts, self.ids + other.ids,
                              self.cropped + [i + offset for i in other.cropped], self.references + other.references)


@dataclass(frozen=True)
class Sample:
    """One completed prompt.

    Attributes:
        prompt: The prompt text as the model saw it (after any cropping).
        completion: The decoded new tokens.
        prompt_ids: Token ids of the prompt.
        completion_ids: Token ids of the completion, up to and including the first EOS.
        reference: The reference continuation, when the prompt has one.
        greedy: The greedy completion beside the sampled one, when asked for (``also_greedy``).
        metrics: Per-sample measurements (length, EOS, mean log-prob ...), filled by the monitor.
        token_logprobs: The model's teacher-forced log-probability of each completion token (where it was sure,
            where it guessed), when the round was scored; else None. Left out of the repr, which it would drown.
        tokens: Each completion token's text, decoded alone (what the per-token views colour), when the round was
            scored; else None. A token that is part of a character (byte-level BPE) decodes to a replacement
            character, so the texts need not add up to ``completion``. Left out of the repr.
        eos: Whether the completion ended with an end-of-sequence token; None when not known. Left out of the
            repr.
    """

    prompt: str
    completion: str
    prompt_ids: list[int]
    completion_ids: list[int]
    reference: str | None = None
    greedy: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    token_logprobs: list[float] | None = field(default=None, repr=False)
    tokens: list[str] | None = field(default=None, repr=False)
    eos: bool | None = field(default=None, repr=False)
