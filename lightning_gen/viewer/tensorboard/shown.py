"""The records as the dashboard's page receives them: every text already made visible, every diff already made.

The page has no rule of its own for showing characters or comparing texts: it lays out the items this module
builds with `lightning_gen.text.visible` and `lightning_gen.text.diff`, the rule and the diff the terminal uses.
A shown text is a list of items, each one of:

- a string: the sample's own characters;
- ``{"mark": kind, "text": shown, "title": what it stands for}``: a mark (``newline``, ``tab``, ``space``,
  ``nbsp``, ``control``, ``empty``, ``eos``), see `lightning_gen.text.visible.Piece`;
- ``{"op": "del" | "add", "items": [...]}``: words only the old (``del``) or the new (``add``) text has;
- ``{"token": i, "id": id, "logprob": x, "items": [...]}``: the characters of completion token ``i``
  (``logprob`` null where not finite, absent where the context cropped the scoring).

Pure Python (no TensorBoard, no web framework).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from lightning_gen.text.diff import Op, diff_sides, similarity
from lightning_gen.text.visible import Piece, eos_piece, labelled_pieces, shown_completion, visible
from lightning_gen.viewer.runs import Record, split_text

__all__ = ["compare_json", "items", "prompt_json", "record_json"]


def _item(piece: Piece) -> str | dict[str, str]:
    return piece.text if piece.mark is None else {"mark": piece.mark, "text": piece.text, "title": piece.title}


def items(pieces: Iterable[Piece | tuple[Piece, Op]]) -> list[Any]:
    """Pieces (or pieces with diff operations) as the page's items; a run of one operation is one group.

    Example::

        >>> from lightning_gen.text.diff import inline_diff
        >>> items(inline_diff("a b", "a c\\n"))
        ['a ', {'op': 'del', 'items': ['b']}, {'op': 'add', 'items': ['c', {'mark': 'newline', 'text': '⏎', \
'title': 'newline'}]}]
    """
    out: list[Any] = []
    for entry in pieces:
        piece, op = entry if isinstance(entry[0], Piece) else (entry, "")
        item = _item(piece)
        if not op:
            out.append(item)
        elif out and isinstance(out[-1], dict) and out[-1].get("op") == op:
            out[-1]["items"].append(item)
        else:
            out.append({"op": op, "items": [item]})
    return out


def _tokens(record: Record, text: str, eos_text: str | None) -> list[dict[str, Any]] | None:
    """The completion token by token (each with its id and log-prob), when the tokens' texts make up the text."""
    tokens, ids = record.tokens, record.completion_ids or []
    if not tokens or len(tokens) != len(ids) or "".join(tokens) != record.completion:
        return None
    scored = record.token_logprobs or []
    offset = len(ids) - len(scored)  # a context that cropped the scoring left the first tokens without one
    spans, at = [], 0
    count = len(ids) - (eos_text is not None)
    for i in range(count):
        spans.append((at, at + len(tokens[i]), i))
        at += len(tokens[i])
    groups: list[dict[str, Any]] = [{"token": i, "id": ids[i], "items": []} for i in range(len(ids))]
    for i, group in enumerate(groups):
        if i >= offset:
            group["logprob"] = scored[i - offset]
    for piece, i in labelled_pieces(text, spans) if text else []:
        groups[i]["items"].append(_item(piece))
    if eos_text is not None:
        groups[-1]["items"].append(_item(eos_piece(eos_text)))
    return [g for g in groups if g["items"]]


def record_json(record: Record, run_eos: str | None, *, tokens: bool = False) -> dict[str, Any]:
    """The record's fields, and ``shown``: its completion and greedy completion made visible, and with ``tokens``
    its completion token by token (null otherwise: a char-level run's tokens would triple what the page loads)."""
    completion, eos_text = split_text(record, "completion", run_eos) or ("", None)
    greedy = split_text(record, "greedy", run_eos)
    shown = {
        "completion": items(shown_completion(completion, eos_text)),
        "greedy": None if greedy is None else items(shown_completion(*greedy)),
        "tokens": _tokens(record, completion, eos_text) if tokens else None,
    }
    return {**dataclasses.asdict(record), "shown": shown}


def prompt_json(record: Record) -> dict[str, Any]:
    """A prompt's index, text and reference, with both made visible."""
    return {"index": record.index, "prompt": record.prompt, "reference": record.reference,
            "shown": {"prompt": items(visible(record.prompt)),
                      "reference": None if record.reference is None else items(visible(record.reference))}}


def compare_json(prompts: Sequence[Record], old: dict[int, Record], new: dict[int, Record],
                 run_eos: str | None) -> list[dict[str, Any]]:
    """Per prompt, its records at two steps, the greedy completions diffed side by side (the sampled ones where
    a run has no greedy ones) and the share of words kept (`lightning_gen.text.diff.similarity`)."""
    field = "greedy" if any(r.greedy is not None for r in [*old.values(), *new.values()]) else "completion"
    out = []
    for prompt in prompts:
        a, b = old.get(prompt.index), new.get(prompt.index)
        entry: dict[str, Any] = {**prompt_json(prompt), "diffed": field, "similarity": None,
                                 "old": None if a is None else record_json(a, run_eos),
                                 "new": None if b is None else record_json(b, run_eos)}
        texts = [split_text(r, field, run_eos) if r is not None else None for r in (a, b)]
        if texts[0] is not None and texts[1] is not None:
            (old_text, old_eos), (new_text, new_eos) = texts
            old_side, new_side = diff_sides(old_text, new_text, old_eos=old_eos, new_eos=new_eos)
            entry["old"]["shown"][field], entry["new"]["shown"][field] = items(old_side), items(new_side)
            entry["similarity"] = similarity(old_text, new_text)
        out.append(entry)
    return out
