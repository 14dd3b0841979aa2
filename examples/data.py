"""Character-level text data: a tokenizer and a LightningDataModule of fixed-length windows.

The text's paragraphs (separated by blank lines) are its documents: each ends with the tokenizer's
end-of-document token, which the model learns to write where a paragraph ends, so a sampled completion can end
before ``max_new_tokens`` (the monitor's ``eos_rate`` and ``length`` move as it learns).

Example::

    >>> tokenizer = CharTokenizer("hello world")
    >>> tokenizer.decode(tokenizer.encode("low") + [tokenizer.eos_token_id])
    'low<|endoftext|>'
    >>> dm = CharDataModule(block_size=64, batch_size=4)  # CPython's pydoc topics
    >>> dm.tokenizer.vocab_size > 90
    True
"""

import re
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


def default_corpus() -> str:
    """English text that ships with CPython: the help topics behind ``help("for")`` and friends."""
    import pydoc_data.topics

    return "\n\n".join(pydoc_data.topics.topics.values())


class CharTokenizer:
    """Maps each character of a corpus to an id, in sorted order, plus one end-of-document token after them.

    The end-of-document token (``eos_token_id``, the last id) is never produced by `encode`: documents are
    ended by appending its id. It decodes to ``<|endoftext|>``, GPT-2's name for it, as Hugging Face tokenizers
    decode special tokens verbatim. There is no padding token (``pad_token_id`` is ``None``).

    Args:
        text: The corpus (or just its alphabet); every character in it gets an id.

    Raises:
        ValueError: If ``text`` is empty.
    """

    eos_token = "<|endoftext|>"
    pad_token_id: int | None = None

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("`text` must contain at least one character, got an empty string")
        self.chars = "".join(sorted(set(text)))
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def eos_token_id(self) -> int:
        """The end-of-document id, after every character's."""
        return len(self.chars)

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters, plus the end-of-document token."""
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        """Return the id of each character of ``text``.

        Raises:
            ValueError: If ``text`` holds a character that was not in the corpus.
        """
        try:
            return [self._stoi[c] for c in text]
        except KeyError as err:
            raise ValueError(
                f"character {err.args[0]!r} is not in the tokenizer's vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text for ``ids`` (a list or a 1-D tensor), the end-of-document token as ``<|endoftext|>``."""
        return "".join(self.chars[int(i)] if int(i) < len(self.chars) else self.eos_token for i in ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class _Windows(Dataset):
    """Windows of ``block_size + 1`` tokens at the given start positions; y is x shifted by one."""

    def __init__(self, data: torch.Tensor, *, block_size: int, starts: Sequence[int]) -> None:
        self.data = data  # (N,)
        self.block_size = block_size
        self.starts = list(starts)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.starts[i]
        chunk = self.data[start : start + self.block_size + 1]  # (block_size + 1,)
        return chunk[:-1], chunk[1:]


_PROSE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,.;:'\"()-")


def is_prose(paragraph: str) -> bool:
    """Whether a paragraph opens with a sentence: a first line of at least 32 characters that starts with a
    capital letter and is words and punctuation, not a heading, a table border, a list item or code.

    Example::

        >>> is_prose("Lists are mutable sequences, typically used to store collections")
        True
        >>> is_prose("+-----------+----------+"), is_prose("Notes:"), is_prose("   1. *t* must have the same length as")
        (False, False, False)
    """
    line = paragraph.strip().split("\n")[0]
    head = line[:32]
    return len(line) >= 32 and head[0].isupper() and sum(c in _PROSE_CHARACTERS for c in head) >= 0.9 * len(head)


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs: the pieces between blank lines, empty ones left out (indentation is kept).

    Example::

        >>> paragraphs("One.\\n\\n\\n   Two,\\nstill two.\\n  \\n")
        ['One.', '   Two,\\nstill two.']
    """
    return [p.rstrip() for p in re.split(r"\n(?:[ \t]*\n)+", text.strip("\n")) if p.strip()]


class CharDataModule(L.LightningDataModule):
    """Character-level language modelling on one text file, each paragraph a document.

    The corpus is read and the tokenizer built in ``__init__``, so ``datamodule.tokenizer`` (and the
    vocabulary size a model needs) exists before any trainer does. Each paragraph is encoded followed by the
    end-of-document token. The last ``val_fraction`` of the tokens (from the first paragraph start there) is
    held out for validation. Training windows start every ``block_size // 2`` tokens and are shuffled by the
    DataLoader, so an epoch is deterministic given the seed. Validation windows start at the held-out
    paragraphs (their indentation skipped), those that open with a sentence (`is_prose`) first: a monitor's
    ``prompts_from_data``, which takes the first validation examples, gets prose, not table borders.

    Args:
        corpus: Path to a UTF-8 text file; ``None`` uses CPython's pydoc topics (about 465k characters).
        block_size: Characters per training example.
        batch_size: Examples per batch.
        val_fraction: Share of the text, taken from its end, used for validation.
        num_workers: DataLoader worker processes.

    Raises:
        FileNotFoundError: If ``corpus`` is not a file.
        ValueError: If an option is out of range or a split is shorter than one window.
    """

    def __init__(
        self,
        corpus: str | None = None,
        *,
        block_size: int = 128,
        batch_size: int = 32,
        val_fraction: float = 0.05,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"`block_size` must be a positive integer, got {block_size}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}")
        if num_workers < 0:
            raise ValueError(f"`num_workers` must be >= 0, got {num_workers}")
        self.save_hyperparameters()
        if corpus is None:
            self.text = default_corpus()
        else:
            path = Path(corpus).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"`corpus` must be a text file, got {corpus!r} (no file at {path.resolve()})")
            self.text = path.read_text(encoding="utf-8")
        self.tokenizer = CharTokenizer(self.text)
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.train_data: _Windows | None = None
        self.val_data: _Windows | None = None
        self.val_prose = 0  # how many validation windows, the first ones, start at a prose paragraph

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (what the model's embedding needs)."""
        return self.tokenizer.vocab_size

    def setup(self, stage: str) -> None:
        if self.train_data is not None:
            return
        ids: list[int] = []
        starts: list[tuple[int, str]] = []  # (position of a paragraph's first non-blank character, paragraph)
        for paragraph in paragraphs(self.text):
            starts.append((len(ids) + len(paragraph) - len(paragraph.lstrip()), paragraph))
            ids += self.tokenizer.encode(paragraph) + [self.tokenizer.eos_token_id]
        data = torch.tensor(ids, dtype=torch.long)  # (N,)
        # The held-out part begins at a paragraph start, so its first window is no fragment.
        split = next((p for p, _ in starts if p >= len(data) * (1.0 - self.val_fraction)), len(data))
        for name, part in (("training", data[:split]), ("validation", data[split:])):
            if len(part) < self.block_size + 1:
                raise ValueError(
                    f"the {name} split has {len(part)} tokens, fewer than `block_size` + 1 = "
                    f"{self.block_size + 1}; use a longer corpus, a smaller `block_size` or another `val_fraction`"
                )
        # Half-overlapping windows double the examples per epoch at no cost in memory.
        stride = max(1, self.block_size // 2)
        self.train_data = _Windows(data[:split], block_size=self.block_size,
                                   starts=range(0, split - self.block_size, stride))
        held_out = [(p - split, is_prose(text)) for p, text in starts if p >= split]
        fits = [(p, prose) for p, prose in held_out if p + self.block_size + 1 <= len(data) - split]
        ordered = [p for p, prose in fits if prose] + [p for p, prose in fits if not prose]
        if not ordered:
            raise ValueError(f"no held-out paragraph leaves room for a window of `block_size` + 1 = "
                             f"{self.block_size + 1} tokens; use a longer corpus or a larger `val_fraction`")
        self.val_prose = sum(prose for _, prose in fits)
        self.val_data = _Windows(data[split:], block_size=self.block_size, starts=ordered)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_data, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_data, shuffle=False)

    def _loader(self, dataset: _Windows | None, *, shuffle: bool) -> DataLoader:
        assert dataset is not None, "`setup` must run before the dataloaders are requested"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle,  # full training batches keep the loss scale steady
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
