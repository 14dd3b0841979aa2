"""A multiple-choice task for the example, made from its held-out text: how does this sentence go on?

Each question is a held-out paragraph up to the middle of one of its sentences; the choices are the rest of that
sentence and the rests of three other held-out sentences of about the same length (from other paragraphs). The
model scores each ``query + " " + choice`` (the `multiple_choice` format of ``lightning_gen.evaluation``); a model
that reads its context prefers the true rest, so accuracy rises from chance (0.25) as the example trains.

The held-out text is exactly what the example validates on (``CharDataModule``'s last ``val_fraction``, never
trained on), so the task is made from the same corpus, deterministically (a fixed seed), with nothing downloaded.
CPython's pydoc topics change a little between Python releases, and the task with them; the file beside this
script was made with Python 3.11.

Run::

    python examples/next_sentence.py [examples/next_sentence.jsonl]

Example::

    >>> rows = next_sentence_rows()
    >>> len(rows) > 50, {len(row["choices"]) for row in rows}
    (True, {4})
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from data import CharDataModule

# A sentence ends at ., ! or ? followed by white space and a capital (or a quoted or emphasised word).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"*])")
MIN_WORDS, MAX_CHARACTERS = 6, 160


def held_out_paragraphs(*, corpus: str | None = None, val_fraction: float = 0.05) -> list[str]:
    """The paragraphs the example validates on and never trains on, as ``CharDataModule`` splits them."""
    data = CharDataModule(corpus, block_size=8, val_fraction=val_fraction)
    data.setup("fit")
    text = data.tokenizer.decode(data.val_data.data.tolist())
    return [paragraph for paragraph in text.split(data.tokenizer.eos_token) if paragraph.strip()]


def _cuts(paragraph: str) -> list[tuple[str, str]]:
    """``(query, rest)`` for each sentence worth asking about: the paragraph up to the space after half its words,
    and the rest of the sentence."""
    bounds = [0] + [m.end() for m in _SENTENCE_END.finditer(paragraph)] + [len(paragraph)]
    out = []
    for start, end in zip(bounds, bounds[1:]):
        sentence = paragraph[start:end].rstrip()
        spaces = [start + i for i, c in enumerate(sentence) if c == " "]
        complete = sentence.endswith((".", "!", "?"))
        if len(sentence.split()) < MIN_WORDS or len(sentence) > MAX_CHARACTERS or not complete:
            continue
        cut = spaces[len(spaces) // 2]
        out.append((paragraph[:cut], paragraph[cut + 1:start + len(sentence)]))
    return out


def next_sentence_rows(*, corpus: str | None = None, val_fraction: float = 0.05, choices: int = 4,
                       seed: int = 0) -> list[dict]:
    """The task's examples, ``{"query", "choices", "gold"}``, in paragraph order.

    Distractors are the rests of other paragraphs' sentences whose length is within a factor 1.5 of the true
    rest's, so that the sum of log-probabilities (``acc``) is not decided by length alone.
    """
    rng = random.Random(seed)
    paragraphs = held_out_paragraphs(corpus=corpus, val_fraction=val_fraction)
    found = [(p, query, rest) for p, paragraph in enumerate(paragraphs) for query, rest in _cuts(paragraph)]
    rows = []
    for p, query, rest in found:
        similar = [other for q, _, other in found if q != p and other != rest
                   and 2 / 3 <= len(other) / len(rest) <= 3 / 2]
        if len(set(similar)) < choices - 1:
            continue
        options = rng.sample(sorted(set(similar)), choices - 1)
        gold = rng.randrange(choices)
        options.insert(gold, rest)
        rows.append({"query": query, "choices": options, "gold": gold})
    return rows


def main(path: str = str(Path(__file__).with_name("next_sentence.jsonl"))) -> None:
    rows = next_sentence_rows()
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    print(f"{len(rows)} questions written to {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
