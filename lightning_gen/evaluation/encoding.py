"""Strings to the token ids lm-evaluation-harness scores: ``_encode_pair``, empty contexts and rolling windows.

For a Hugging Face tokenizer (or a ``tokenizers`` one, or a path) text is encoded with the tokenizer's default
special tokens, as lm-eval's ``HFLM.tok_encode`` does: a tokenizer that adds BOS keeps it, and a text that already
starts with the prefix token's string is encoded without them. Other tokenizers (sentencepiece, tiktoken, your own
``encode``/``decode`` object) give the ids their ``encode`` gives. The tokenizer itself is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_gen.text.tokenization import load_tokenizer

__all__ = ["RequestEncoder", "rolling_windows"]


class RequestEncoder:
    """Encodes ``(context, continuation)`` requests and texts to be scored, as lm-eval's ``HFLM`` does.

    Args:
        tokenizer: Anything `~lightning_gen.load_tokenizer` takes.
        argument: The name used for ``tokenizer`` in error messages.

    Attributes:
        prefix_token_id: What an empty context is scored after, and what starts a rolling text: BOS, else EOS;
            None when the tokenizer has neither.

    Example::

        >>> class Chars:
        ...     eos_token_id = 0
        ...     def encode(self, text): return [ord(c) for c in text]
        ...     def decode(self, ids): return "".join(map(chr, ids))
        >>> encoder = RequestEncoder(Chars())
        >>> encoder.pair("Hi ", "you")    # the context's trailing space moves to the continuation
        ([72, 105], [32, 121, 111, 117])
        >>> encoder.pair("", "ok")        # an empty context: scored after the prefix token
        ([0], [111, 107])
    """

    def __init__(self, tokenizer: Any, *, argument: str = "tokenizer") -> None:
        loaded = load_tokenizer(tokenizer, argument=argument)
        self._argument = argument
        self._hf = loaded.hf_tokenizer
        self._plain = loaded.encode
        prefix = loaded.bos_token_id if loaded.bos_token_id is not None else loaded.first_eos
        self.prefix_token_id: int | None = prefix
        # lm-eval encodes a text that already starts with the prefix token's string without special tokens.
        self._prefix_text = self._hf.decode([prefix]) if self._hf is not None and prefix is not None else None

    def encode(self, text: str) -> list[int]:
        """``text`` with the tokenizer's default special tokens (HF tokenizers), else its plain ids."""
        if self._hf is None:
            return self._plain(text)
        if self._prefix_text and text.startswith(self._prefix_text):
            return list(self._hf.encode(text, add_special_tokens=False))
        return list(self._hf.encode(text))

    def encode_plain(self, text: str) -> list[int]:
        """``text`` without any special token."""
        return self._plain(text)

    def _prefix(self, what: str) -> int:
        if self.prefix_token_id is None:
            raise ValueError(f"`{self._argument}` has neither a BOS nor an EOS token id, and {what} needs one to be "
                             "scored after (lm-eval's prefix token); use a tokenizer that defines one")
        return self.prefix_token_id

    def pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids as lm-eval's ``_encode_pair``: trailing whitespace of the context moves to
        the continuation, whose ids are those of ``encode(context + continuation)`` after ``encode(context)``'s
        length. An empty context is the prefix token, and the continuation is encoded without special tokens (if
        it starts with the prefix token itself, that token is the context)."""
        if context == "":
            ids = self.encode_plain(continuation)
            prefix = self._prefix("an empty context")
            if ids and ids[0] == prefix:
                return ids[:1], ids[1:]
            return [prefix], ids
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids):]

    def rolling(self, text: str, context_length: int | None) -> list[tuple[list[int], list[int]]]:
        """``text`` as lm-eval's ``loglikelihood_rolling`` scores it: see `rolling_windows`."""
        ids = self.encode(text)
        return rolling_windows(ids, self._prefix("a rolling text") if ids else 0, context_length)


def rolling_windows(
    ids: Sequence[int], prefix_token_id: int, context_length: int | None
) -> list[tuple[list[int], list[int]]]:
    """``(context, continuation)`` requests whose continuations tile ``ids``: lm-eval's rolling windows (one token
    of context, made disjoint).

    The first window predicts the first ``L`` tokens after the prefix token; each later one predicts the next
    ``L`` (or what is left), given the tokens before them that fit, so that every window is at most ``L`` long.
    Without a context length the whole text is one window.

    Example::

        >>> rolling_windows([1, 2, 3, 4, 5], 0, 2)
        [([0], [1, 2]), ([2], [3, 4]), ([3, 4], [5])]
    """
    ids = list(ids)
    if not ids:
        return []
    if context_length is None:
        return [([prefix_token_id], ids)]
    first = min(context_length, len(ids))
    windows = [([prefix_token_id], ids[:first])]
    end = first
    while end < len(ids):
        count = min(len(ids) - end, context_length)
        end += count
        windows.append((ids[end - context_length - 1:end - count], ids[end - count:end]))
    return windows
