"""Tiny tokenizers: character-level ones as users write them, nanoGPT's ``meta.pkl`` lambdas, a byte-level tiktoken
encoding, byte-level BPE trained here on CPython's help topics, a 96-token transformers tokenizer for the tiny
transformers models; nothing is downloaded."""

from __future__ import annotations

import pydoc_data.topics
import string
from collections.abc import Sequence

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

VOCAB = "abcdefghijklmnopqrstuvwxyz .,<>|#*`_\n"  # 37 characters: TinyLM's
SYMBOLS = string.ascii_letters + string.digits + " .,!\n"  # 67 characters: a user's own GPT's
CORPUS = list(pydoc_data.topics.topics.values())

VOCAB_SIZE = 96  # `hf_char_tokenizer`'s, and the tiny transformers models' of the fixtures
PAD_ID, EOS_ID, BOS_ID = 0, 1, 2
# Prompts draw from [FIRST_REGULAR_ID, VOCAB_SIZE) so they never contain pad: HF infers an attention
# mask from pad ids found in the prompt, which a plain model cannot mirror.
FIRST_REGULAR_ID = 3

_SPECIAL_TOKENS = ["<pad>", "</s>", "<s>"]
_CHARS = list(string.ascii_lowercase + string.ascii_uppercase + string.digits + " ")
# Multi-character tokens, so stop strings can be completed by tokens that overlap them.
_BIGRAMS = [
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of",
    "ed", "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le",
]  # fmt: skip


class CharTokenizer:
    """A character-level tokenizer as users write one: an id per character of ``symbols`` (`VOCAB`, TinyLM's, unless
    given), ``vocab_size`` its count; with ``eos`` the newline's id ends a text (id 36 of `VOCAB`). Decoding an id it
    lacks raises IndexError, as tiktoken raises KeyError."""

    def __init__(self, symbols: str = VOCAB, *, eos: bool = False) -> None:
        self.symbols = symbols
        self.vocab_size = len(symbols)
        self.eos_token_id = symbols.index("\n") if eos else None

    def encode(self, text: str) -> list[int]:
        return [self.symbols.index(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.symbols[i] for i in ids)


def meta_pkl_tokenizer():
    """nanoGPT's char tokenizer as `sample.py` builds it from ``meta.pkl``: two lambdas, no size."""
    stoi = {c: i for i, c in enumerate(SYMBOLS)}
    itos = dict(enumerate(SYMBOLS))
    return type("Meta", (), {"encode": staticmethod(lambda s: [stoi[c] for c in s]),
                             "decode": staticmethod(lambda ids: "".join(itos[i] for i in ids))})()


def byte_tiktoken(merges: Sequence[bytes] = (b"th", b"he", b"in", b"the")):
    """A tiktoken ``Encoding`` built offline: GPT-2's split pattern over the 256 bytes and a few merges, then
    ``<|endoftext|>`` as the last id (``n_vocab`` = 256 + merges + 1), as nanoGPT's GPT-2 tokenizer is shaped."""
    import tiktoken

    ranks = {bytes([i]): i for i in range(256)}
    for piece in merges:  # each merge joins pieces that already have ranks
        ranks[piece] = len(ranks)
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding("byte-tiny", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": len(ranks)})


def train_bpe(*, adds_bos: bool, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's kind) trained on part of the help topics; ``adds_bos``: Llama's habit of
    starting every encoding with ``<s>``."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS[:150], trainer)
    if adds_bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
        return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="<|endoftext|>")
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def hf_char_tokenizer() -> PreTrainedTokenizerFast:
    """A 96-token tokenizer matching the tiny models' vocab: 3 specials, 63 single chars, 30 bigrams.

    Text is split into single characters (so bigram tokens are never produced by encoding, only by the
    model) and ids are decoded by concatenation.
    """
    vocab = {token: i for i, token in enumerate(_SPECIAL_TOKENS + _CHARS + _BIGRAMS)}
    assert len(vocab) == VOCAB_SIZE
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
