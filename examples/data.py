"""Character-level text data: a tokenizer and a LightningDataModule of fixed-length windows.

Example::

    >>> tokenizer = CharTokenizer("hello world")
    >>> tokenizer.decode(tokenizer.encode("low"))
    'low'
    >>> dm = CharDataModule(block_size=64, batch_size=4)  # CPython's pydoc topics
    >>> dm.tokenizer.vocab_size > 90
    True
"""

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
    """Maps each character of a corpus to an id, in sorted order.

    There are no special tokens, so ``eos_token_id`` and ``pad_token_id`` are ``None``.

    Args:
        text: The corpus (or just its alphabet); every character in it gets an id.

    Raises:
        ValueError: If ``text`` is empty.
    """

    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("`text` must contain at least one character, got an empty string")
        self.chars = "".join(sorted(set(text)))
        self._stoi = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self.chars)

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
        """Return the text for ``ids`` (a list or a 1-D tensor)."""
        return "".join(self.chars[int(i)] for i in ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


class _Windows(Dataset):
    """Windows of ``block_size + 1`` tokens starting every ``stride`` tokens; y is x shifted by one."""

    def __init__(self, data: torch.Tensor, *, block_size: int, stride: int) -> None:
        self.data = data  # (N,)
        self.block_size = block_size
        self.stride = stride

    def __len__(self) -> int:
        return (len(self.data) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.data[i * self.stride : i * self.stride + self.block_size + 1]  # (block_size + 1,)
        return chunk[:-1], chunk[1:]


class CharDataModule(L.LightningDataModule):
    """Character-level language modelling on one text file.

    The corpus is read and the tokenizer built in ``__init__``, so ``datamodule.tokenizer`` (and the
    vocabulary size a model needs) exists before any trainer does. The last ``val_fraction`` of the text
    is held out for validation. Training windows start every ``block_size // 2`` characters and are
    shuffled by the DataLoader, so an epoch is deterministic given the seed.

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

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size (what the model's embedding needs)."""
        return self.tokenizer.vocab_size

    def setup(self, stage: str) -> None:
        if self.train_data is not None:
            return
        data = torch.tensor(self.tokenizer.encode(self.text), dtype=torch.long)  # (N,)
        split = int(len(data) * (1.0 - self.val_fraction))
        for name, part in (("training", data[:split]), ("validation", data[split:])):
            if len(part) < self.block_size + 1:
                raise ValueError(
                    f"the {name} split has {len(part)} characters, fewer than `block_size` + 1 = "
                    f"{self.block_size + 1}; use a longer corpus, a smaller `block_size` or another `val_fraction`"
                )
        # Half-overlapping windows double the examples per epoch at no cost in memory.
        self.train_data = _Windows(data[:split], block_size=self.block_size, stride=max(1, self.block_size // 2))
        self.val_data = _Windows(data[split:], block_size=self.block_size, stride=self.block_size)

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
