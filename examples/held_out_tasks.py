"""Evaluation tasks for the example, made from its held-out text: ``examples/tasks/`` (listed in ``tasks.yaml``).

The held-out text is exactly what the example validates on (``CharDataModule``'s last ``val_fraction``, never
trained on). From it, deterministically (fixed seeds) and with nothing downloaded:

* ``word_order.jsonl`` (multiple choice): a held-out paragraph up to a third (and, a second question, up to two
  thirds) of one of its sentences; the choices are the sentence's next (up to) six words in their order and in three
  other orders. A model that has learned how words follow each other picks the right order: over the example's 600
  steps accuracy climbs from chance (0.25) to about 0.7.
* ``next_sentence.jsonl`` (multiple choice): a held-out paragraph up to the middle of one of its sentences; the
  choices are the rest of that sentence and the rests of three other held-out sentences of about the same length,
  from other paragraphs. Telling them apart
  takes reading the context: a harder task that stays near chance on the example's short run and rises with longer
  training and larger models.
* ``held_out.txt`` (bits per byte): the held-out text itself.

CPython's pydoc topics change a little between Python releases, and the tasks with them; the files in
``examples/tasks/`` were made with Python 3.11.

Run::

    python examples/held_out_tasks.py [examples/tasks]

Example::

    >>> rows = word_order_rows()
    >>> len(rows) > 100, {len(row["choices"]) for row in rows}
    (True, {4})
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from data import CharDataModule, CharTokenizer

# A sentence ends at ., ! or ? followed by white space and a capital (or a quoted or emphasised word).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"*])")
MIN_WORDS, MAX_CHARACTERS, ORDER_WORDS, CHOICES = 6, 160, 6, 4


def held_out_text(*, corpus: str | None = None, val_fraction: float = 0.05) -> str:
    """The text the example validates on and never trains on, as ``CharDataModule`` splits it (paragraphs
    separated by the tokenizer's end-of-document token)."""
    data = CharDataModule(corpus, block_size=8, val_fraction=val_fraction)
    data.setup("fit")
    return data.tokenizer.decode(data.val_data.data.tolist())


def held_out_paragraphs(text: str) -> list[str]:
    """The paragraphs of the held-out ``text`` (`held_out_text`), in order."""
    return [paragraph for paragraph in text.split(CharTokenizer.eos_token) if paragraph.strip()]


def _cuts(paragraph: str, words: int | None, at: tuple[float, ...]) -> list[tuple[str, str]]:
    """``(query, continuation)`` for each sentence worth asking about and each fraction in ``at``: the paragraph up
    to the space after that fraction of the sentence's words, and the next ``words`` words (None: the rest of the
    sentence)."""
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(paragraph)] + [len(paragraph)]
    out = []
    for start, end in zip(bounds, bounds[1:]):
        sentence = paragraph[start:end].rstrip()
        spaces = [start + i for i, c in enumerate(sentence) if c == " " and not sentence[i + 1:i + 2].isspace()]
        complete = sentence.endswith((".", "!", "?"))
        if len(sentence.split()) < MIN_WORDS or len(sentence) > MAX_CHARACTERS or not complete:
            continue
        for fraction in at:
            k = int(len(spaces) * fraction)
            stop = spaces[k + words] if words is not None and k + words < len(spaces) else start + len(sentence)
            out.append((paragraph[:spaces[k]], paragraph[spaces[k] + 1:stop].rstrip()))
    return out


def _questions(text: str, words: int | None, at: tuple[float, ...]) -> list[tuple[int, str, str]]:
    paragraphs = held_out_paragraphs(text)
    return [(p, query, rest) for p, paragraph in enumerate(paragraphs) for query, rest in _cuts(paragraph, words, at)]


def _row(query: str, truth: str, others: list[str], rng: random.Random) -> dict:
    gold = rng.randrange(CHOICES)
    choices = rng.sample(others, CHOICES - 1)
    choices.insert(gold, truth)
    return {"query": query, "choices": choices, "gold": gold}


def next_sentence_rows(text: str, *, seed: int = 0) -> list[dict]:
    """``{"query", "choices", "gold"}`` from the held-out ``text``: the rest of the sentence among the rests of other
    paragraphs' sentences whose length is within a factor 1.5 of it (so that summed log-probabilities are not decided
    by length)."""
    rng = random.Random(seed)
    found = _questions(text, None, (0.5,))
    rows = []
    for p, query, rest in found:
        similar = sorted({other for q, _, other in found if q != p and other != rest
                          and 2 / 3 <= len(other) / len(rest) <= 3 / 2})
        if len(similar) >= CHOICES - 1:
            rows.append(_row(query, rest, similar, rng))
    return rows


def word_order_rows(text: str, *, seed: int = 0) -> list[dict]:
    """``{"query", "choices", "gold"}`` from the held-out ``text``: the sentence's next words in their order among
    three other orders of the same words (same characters, so ``acc`` and ``acc_norm`` agree)."""
    rng = random.Random(seed)
    rows = []
    for _, query, rest in _questions(text, ORDER_WORDS, (1 / 3, 2 / 3)):
        # The words move; the white space between them (a line break and an indentation, say) stays where it is.
        words, gaps = re.split(r"\s+", rest), re.findall(r"\s+", rest)
        orders = set()
        for _ in range(50):
            rng.shuffle(words)
            orders.add("".join(word + gap for word, gap in zip(words, [*gaps, ""])))
        orders.discard(rest)
        if len(orders) >= CHOICES - 1:
            rows.append(_row(query, rest, sorted(orders), rng))
    return rows


def main(folder: str = str(Path(__file__).with_name("tasks"))) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    text = held_out_text()
    for name, rows in (("word_order", word_order_rows(text)), ("next_sentence", next_sentence_rows(text))):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        print(f"{len(rows)} questions written to {out / name}.jsonl")
    (out / "held_out.txt").write_text(text.replace(CharTokenizer.eos_token, "\n\n"), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])
