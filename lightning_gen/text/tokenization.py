"""Turn whatever tokenizer the user gave into one tokenizer interface.

`load_tokenizer` returns a `LoadedTokenizer`: plain ids in (no special tokens added), verbatim text
out (special tokens kept, so a sampled ``<eos>`` shows in the logs). Nothing is ever downloaded.
"""

from __future__ import annotations

import operator
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = ["LoadedTokenizer", "TextTokenizer", "decodable_ids", "load_tokenizer"]

_ACCEPTED_PATHS = (
    "a tokenizer.json (any *.json) file, a sentencepiece *.model file, or a local Hugging Face "
    "tokenizer folder containing tokenizer.json or tokenizer_config.json"
)
_HF_FOLDER_FILES = ("tokenizer.json", "tokenizer_config.json")


@runtime_checkable
class TextTokenizer(Protocol):
    """What the rest of the library relies on: text to ids and back."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclass(frozen=True)
class LoadedTokenizer:
    """One tokenizer interface over Hugging Face, ``tokenizers``, sentencepiece and custom objects.

    Args:
        encode_fn: Text to plain token ids, without adding special tokens.
        decode_fn: Token ids to text, keeping special tokens verbatim.
        eos_token_id: End-of-sequence id(s), or ``None`` when the tokenizer does not define one.
        bos_token_id: Beginning-of-sequence id, or ``None`` (scoring's prefix token; generation never adds it).
        pad_token_id: Padding id, or ``None``.
        vocab_size: Number of ids the tokenizer can produce (added tokens included), or ``None``.
        hf_tokenizer: The Hugging Face tokenizer behind it, if any (needed for ``stop_strings``).

    Example::

        >>> tok = LoadedTokenizer(encode_fn=lambda s: [ord(c) for c in s],
        ...                       decode_fn=lambda ids: "".join(map(chr, ids)), vocab_size=256)
        >>> tok.decode(tok.encode("hi"))
        'hi'
    """

    encode_fn: Callable[[str], list[int]] = field(repr=False)
    decode_fn: Callable[[list[int]], str] = field(repr=False)
    eos_token_id: int | list[int] | None = None
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    vocab_size: int | None = None
    hf_tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def first_eos(self) -> int | None:
        """The first of the EOS ids (the one a text ends with), or None."""
        return self.eos_token_id[0] if isinstance(self.eos_token_id, list) else self.eos_token_id

    def encode(self, text: str) -> list[int]:
        """Encodes ``text`` to plain ids (no BOS/EOS added)."""
        return self.encode_fn(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Decodes ``ids`` to text, special tokens included."""
        return self.decode_fn(_as_ids(ids, "ids"))


def load_tokenizer(tokenizer: object, *, argument: str = "tokenizer") -> LoadedTokenizer:
    """Wraps a tokenizer, or loads one from a local path, behind the `LoadedTokenizer` interface.

    Args:
        tokenizer: A ``str``/``os.PathLike`` path to a ``*.json`` (``tokenizers`` serialization),
            a sentencepiece ``*.model`` or a local Hugging Face tokenizer folder; a Hugging Face
            ``PreTrainedTokenizerBase``; a ``tokenizers.Tokenizer``; a
            ``sentencepiece.SentencePieceProcessor``; a `LoadedTokenizer` (returned as is); or any
            object with callable ``encode(text)`` and ``decode(ids)`` (a tiktoken ``Encoding``, nanoGPT's
            char tokenizer ...), whose size is read from ``vocab_size``, ``n_vocab`` (tiktoken), ``len()`` or
            ``get_vocab()``, and whose optional ``eos_token_id`` (else tiktoken's ``eot_token``) and
            ``pad_token_id`` are read. Where none gives the size, `decodable_ids` finds it by asking ``decode``.
        argument: Name used for ``tokenizer`` in error messages, e.g. ``"tokenizer"``.

    Returns:
        The wrapped tokenizer.

    Raises:
        FileNotFoundError: If a path does not exist.
        ValueError: If a path exists but is not a supported kind, or fails to load.
        ImportError: If a ``*.model`` path is given and sentencepiece is not installed.
        TypeError: If an object lacks a callable ``encode`` or ``decode``.

    Example::

        >>> class Chars:
        ...     eos_token_id = 0
        ...     def encode(self, text): return [ord(c) for c in text]
        ...     def decode(self, ids): return "".join(chr(i) for i in ids)
        >>> tok = load_tokenizer(Chars())
        >>> tok.encode("hi"), tok.decode([104, 105]), tok.eos_token_id
        ([104, 105], 'hi', 0)
    """
    if isinstance(tokenizer, LoadedTokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        return _load_path(Path(tokenizer), argument)
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return _wrap_hf(tokenizer)
    if isinstance(tokenizer, tokenizers.Tokenizer):
        # The HF wrapper copies the backend (the user's object stays untouched); it enables
        # `stop_strings` in generation.
        return _wrap_hf(PreTrainedTokenizerFast(tokenizer_object=tokenizer))
    spm = sys.modules.get("sentencepiece")  # a processor implies the module is already imported
    if spm is not None and isinstance(tokenizer, spm.SentencePieceProcessor):
        return _wrap_sentencepiece(tokenizer)
    return _wrap_custom(tokenizer, argument)


def _load_path(path: Path, argument: str) -> LoadedTokenizer:
    if not path.exists():
        raise FileNotFoundError(
            f"`{argument}` must be an existing local path (nothing is downloaded), "
            f"got '{path}', which does not exist"
        )
    is_hf_folder = path.is_dir() and any((path / name).is_file() for name in _HF_FOLDER_FILES)
    if not (is_hf_folder or path.is_file() and path.suffix in (".json", ".model")):
        raise ValueError(f"`{argument}` path must be {_ACCEPTED_PATHS}; got '{path}'")
    spm = _sentencepiece() if path.suffix == ".model" and not is_hf_folder else None
    try:
        if is_hf_folder:
            return _wrap_hf(AutoTokenizer.from_pretrained(str(path), local_files_only=True))
        if spm is not None:
            return _wrap_sentencepiece(spm.SentencePieceProcessor(model_file=str(path)))
        backend = tokenizers.Tokenizer.from_file(str(path))
        return _wrap_hf(PreTrainedTokenizerFast(tokenizer_object=backend))
    except Exception as err:  # tokenizers raises a bare `Exception` on a malformed file
        message = f"`{argument}` path '{path}' could not be loaded as a tokenizer: {err}"
        raise ValueError(message) from err


def _sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as err:
        message = "Loading a sentencepiece *.model needs sentencepiece: `pip install sentencepiece`"
        raise ImportError(message) from err
    return sentencepiece


def _wrap_hf(hf: PreTrainedTokenizerBase) -> LoadedTokenizer:
    return LoadedTokenizer(
        encode_fn=lambda text: list(hf.encode(text, add_special_tokens=False)),
        decode_fn=lambda ids: hf.decode(ids, skip_special_tokens=False),
        eos_token_id=hf.eos_token_id,
        bos_token_id=hf.bos_token_id,
        pad_token_id=hf.pad_token_id,
        vocab_size=len(hf),
        hf_tokenizer=hf,
    )


def _wrap_sentencepiece(sp: Any) -> LoadedTokenizer:
    def decode(ids: list[int]) -> str:
        # sentencepiece drops control pieces (</s>, <pad>, ...) when decoding; keep them visible by
        # decoding the runs between them and writing the control pieces themselves in between.
        text, run = "", []
        for i in [*ids, None]:
            if i is not None and not sp.is_control(i):
                run.append(i)
                continue
            if run:
                chunk = sp.decode(run)
                # A run after a control piece loses its leading space, as a text start would.
                lost_space = sp.id_to_piece(run[0]).startswith("\u2581") and chunk[:1] != " "
                text, run = text + (" " if text and lost_space else "") + chunk, []
            if i is not None:
                text += sp.id_to_piece(i)
        return text

    return LoadedTokenizer(
        encode_fn=lambda text: list(sp.encode(text)),
        decode_fn=decode,
        eos_token_id=sp.eos_id() if sp.eos_id() >= 0 else None,
        bos_token_id=sp.bos_id() if sp.bos_id() >= 0 else None,
        pad_token_id=sp.pad_id() if sp.pad_id() >= 0 else None,
        vocab_size=sp.get_piece_size(),
    )


def _wrap_custom(obj: Any, argument: str) -> LoadedTokenizer:
    missing = [name for name in ("encode", "decode") if not callable(getattr(obj, name, None))]
    if missing:
        raise TypeError(
            f"`{argument}` must be a path, a Hugging Face / tokenizers / sentencepiece tokenizer, "
            f"or an object with callable `encode` and `decode`; got {type(obj).__qualname__}, "
            f"which lacks "
            f"{' and '.join(f'`{name}`' for name in missing)}"
        )
    vocab_size = _declared_size(obj)
    eos = getattr(obj, "eos_token_id", None)
    if eos is None:
        eos = getattr(obj, "eot_token", None)  # tiktoken's <|endoftext|>
    pad = getattr(obj, "pad_token_id", None)
    bos = getattr(obj, "bos_token_id", None)  # read only for scoring's prefix: anything but an id is no BOS
    return LoadedTokenizer(
        encode_fn=lambda text: _as_ids(obj.encode(text), f"{argument}.encode(text)"),
        decode_fn=obj.decode,
        eos_token_id=_optional_ids(eos, f"{argument}.eos_token_id"),
        bos_token_id=bos if isinstance(bos, int) and not isinstance(bos, bool) else None,
        pad_token_id=None if pad is None else _as_id(pad, f"{argument}.pad_token_id"),
        vocab_size=None if vocab_size is None else _as_id(vocab_size, f"{argument}.vocab_size"),
    )


def _declared_size(obj: Any) -> int | None:
    """How many ids a tokenizer says it has: ``vocab_size`` (an attribute or a method), ``n_vocab`` (tiktoken),
    ``len()``, or one more than the largest id of ``get_vocab()``; None when it says nothing."""
    for name in ("vocab_size", "n_vocab"):
        size = getattr(obj, name, None)
        size = size() if callable(size) else size
        if size is not None:
            return size
    if callable(getattr(obj, "__len__", None)):
        return len(obj)
    get_vocab = getattr(obj, "get_vocab", None)
    if callable(get_vocab):
        ids = list(get_vocab().values())
        return max(ids) + 1 if ids else None
    return None


def decodable_ids(tokenizer: LoadedTokenizer, below: int) -> int:
    """How many ids ``tokenizer`` decodes, counted from 0 and at most ``below``: its declared size, else found by
    asking its ``decode`` (a binary search for the first id it refuses; a tokenizer decodes ids ``[0, n)``).

    For a tokenizer that says nothing of its size (nanoGPT's char tokenizer: ``decode`` a lambda over ``itos``), on a
    model with more logits (a padded vocabulary): the ids a round may sample.

    Raises:
        ValueError: ``decode`` refuses id 0, so no id can be sampled.

    Example::

        >>> itos = {0: "a", 1: "b", 2: "c"}
        >>> chars = LoadedTokenizer(encode_fn=list, decode_fn=lambda ids: "".join(itos[i] for i in ids))
        >>> decodable_ids(chars, below=64)
        3
    """
    if tokenizer.vocab_size is not None:
        return min(tokenizer.vocab_size, below)

    def decodes(i: int) -> bool:
        try:
            tokenizer.decode([i])
        except Exception:  # noqa: BLE001 - what a decode raises for an id it lacks is its own (KeyError, IndexError)
            return False
        return True

    if not decodes(0):
        raise ValueError("`tokenizer.decode` refuses id 0; pass a tokenizer that decodes the model's ids, or "
                         "`vocab_size`")
    low, high = 1, below  # decodes(low - 1); the answer is in [low, high]
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if decodes(middle) else (low, middle)
    return low


def _optional_ids(value: object, name: str) -> int | list[int] | None:
    if value is None:
        return None
    if isinstance(value, Sequence) or getattr(value, "ndim", 0) > 0:  # list, tuple, tensor
        return _as_ids(value, name)
    return _as_id(value, name)


def _as_id(value: object, name: str) -> int:
    try:
        return operator.index(value)  # takes numpy ints and 0-d int tensors; not floats
    except TypeError:
        raise TypeError(f"`{name}` must be an integer token id, got {value!r}") from None


def _as_ids(values: object, name: str) -> list[int]:
    if hasattr(values, "tolist"):  # torch.Tensor / numpy array
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, str):
        kind = type(values).__qualname__
        raise TypeError(f"`{name}` must be a flat sequence of integer ids, got {kind}")
    return [_as_id(v, name) for v in values]
