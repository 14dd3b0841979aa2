"""Task files in the field's formats, read into examples of ``(context, continuation)`` strings.

One JSON object per line (blank lines skipped, other fields ignored):

* ``multiple_choice`` (DCLM / CORE, lm-eval's multiple choice): ``{"query", "choices", "gold"}``; one request per
  choice, ``(query, delimiter + choice)``; right when the gold choice is the likeliest.
* ``schema`` (Winograd-style, lm-eval's multiple input): ``{"context_options", "continuation", "gold"}``; one
  request per context option, ``(option, delimiter + continuation)``; right when the gold option makes the
  continuation likeliest.
* ``language_modeling`` (LAMBADA-style): ``{"context", "continuation"}``; one request, right when greedy
  decoding from the context gives exactly the continuation.

A ``bits_per_byte`` task reads plain text instead: a UTF-8 file, or every ``*.txt`` file under a folder (in
sorted order), each a document. Few-shot examples come before a question's context, each written as its context,
the delimiter and its right continuation, separated by the few-shot delimiter; they are drawn from the other
examples of the file with the seed ``FEWSHOT_SEED + index``, and ``max_examples`` picks its subset once with
``SUBSET_SEED``: the same requests on every process and in every round.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from lightning_gen.evaluation.specs import TaskSpec
from lightning_gen.text.json_lines import read_json_lines

__all__ = ["FEWSHOT_SEED", "SUBSET_SEED", "Document", "Example", "read_documents", "read_examples", "subset"]

FEWSHOT_SEED = 1234  # nanochat's choice for CORE's few-shot draws (one generator per example: 1234 + index)
SUBSET_SEED = 1234


@dataclass(frozen=True)
class Example:
    """One question of a task file, as requests of strings.

    Attributes:
        index: Its number among the file's examples (0-based): what records and flips refer to.
        line: Its line in the file (1-based).
        requests: ``(context, continuation)`` pairs, few-shot examples and delimiter included.
        gold: The index of the right request (0 for ``language_modeling``, which has one).
        lengths: What ``acc_norm`` divides each request's log-likelihood by, lm-eval's choice lengths in
            characters: each choice (``multiple_choice``), each context option (``schema``), the continuation.
        fewshot: The few-shot prefix every context starts with (the solved examples; empty without).
    """

    index: int
    line: int
    requests: tuple[tuple[str, str], ...]
    gold: int
    lengths: tuple[int, ...]
    fewshot: str = ""


@dataclass(frozen=True)
class Document:
    """One held-out text of a ``bits_per_byte`` task: its file (relative to the task's path) and its text."""

    index: int
    name: str
    text: str

    @property
    def num_bytes(self) -> int:
        """Its length in UTF-8 bytes, what bits per byte divides by."""
        return len(self.text.encode("utf-8"))


@dataclass(frozen=True)
class _Parsed:
    line: int
    pairs: tuple[tuple[str, str], ...]  # (context, target) before delimiters and few-shot examples
    gold: int


def _text(row: dict[str, Any], field: str, where: str, *, empty: bool = False) -> str:
    value = row.get(field)
    if not isinstance(value, str) or (not empty and not value):
        raise ValueError(f"{where}: `{field}` must be a{'' if empty else ' non-empty'} string, got {value!r}")
    return value


def _texts(row: dict[str, Any], field: str, where: str) -> list[str]:
    value = row.get(field)
    if not (isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) and v for v in value)):
        raise ValueError(f"{where}: `{field}` must be a list of at least two non-empty strings, got {value!r}")
    return value


def _gold(row: dict[str, Any], count: int, where: str) -> int:
    value = row.get("gold")
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count):
        raise ValueError(f"{where}: `gold` must be an index in [0, {count}), got {value!r}")
    return value


def _parse(spec: TaskSpec, line: int, row: Any) -> _Parsed:
    where = f"task {spec.name!r}: '{spec.path}' line {line}"
    if not isinstance(row, dict):
        raise ValueError(f"{where}: must be a JSON object, got {type(row).__name__}")
    if spec.type == "multiple_choice":
        query, choices = _text(row, "query", where, empty=True), _texts(row, "choices", where)
        return _Parsed(line, tuple((query, choice) for choice in choices), _gold(row, len(choices), where))
    if spec.type == "schema":
        options, continuation = _texts(row, "context_options", where), _text(row, "continuation", where)
        return _Parsed(line, tuple((option, continuation) for option in options), _gold(row, len(options), where))
    return _Parsed(line, ((_text(row, "context", where, empty=True), _text(row, "continuation", where)),), 0)


def _read_lines(spec: TaskSpec) -> list[_Parsed]:
    if not spec.path.is_file():
        raise FileNotFoundError(f"task {spec.name!r}: `path` must be a JSON Lines file, got '{spec.path}'")
    parsed = [_parse(spec, number, row) for number, row in read_json_lines(spec.path, named=f"task {spec.name!r}:")]
    if not parsed:
        raise ValueError(f"task {spec.name!r}: '{spec.path}' holds no example")
    return parsed


def subset(count: int, max_examples: int | None) -> list[int]:
    """The indices kept out of ``count``: all, or ``max_examples`` of them drawn with `SUBSET_SEED`, in order.

    Example::

        >>> subset(5, None), len(subset(100, 10)) == 10 and subset(100, 10) == subset(100, 10)
        ([0, 1, 2, 3, 4], True)
    """
    if max_examples is None or max_examples >= count:
        return list(range(count))
    return sorted(random.Random(SUBSET_SEED).sample(range(count), max_examples))


def read_examples(spec: TaskSpec) -> list[Example]:
    """The examples of a ``multiple_choice``, ``schema`` or ``language_modeling`` task file, as requests.

    Raises:
        FileNotFoundError: ``spec.path`` is not a file.
        ValueError: A line that is not a JSON object, a field missing or of the wrong kind, a ``gold`` out of
            range, or fewer other examples than ``num_fewshot``; the message names the task, the file, the line
            and the field.
    """
    if spec.type == "bits_per_byte":
        raise ValueError(f"task {spec.name!r} is a bits_per_byte task: read it with `read_documents`")
    parsed = _read_lines(spec)
    if spec.num_fewshot >= len(parsed):
        raise ValueError(f"task {spec.name!r}: `num_fewshot` must be less than its {len(parsed)} examples, "
                         f"got {spec.num_fewshot}")
    delimiter = spec.continuation_delimiter
    examples = []
    for index in subset(len(parsed), spec.max_examples):
        item = parsed[index]
        others = [i for i in range(len(parsed)) if i != index]
        shots = random.Random(FEWSHOT_SEED + index).sample(others, spec.num_fewshot) if spec.num_fewshot else []
        solved = [parsed[i].pairs[parsed[i].gold] for i in shots]
        prefix = "".join(f"{context}{delimiter}{target}{spec.fewshot_delimiter}" for context, target in solved)
        requests = tuple((prefix + context, delimiter + target) for context, target in item.pairs)
        lengths = tuple(len(target if spec.type != "schema" else context) for context, target in item.pairs)
        examples.append(Example(index, item.line, requests, item.gold, lengths, fewshot=prefix))
    return examples


def read_documents(spec: TaskSpec) -> list[Document]:
    """The documents of a ``bits_per_byte`` task: its text file, or the ``*.txt`` files under its folder.

    Raises:
        FileNotFoundError: ``spec.path`` does not exist, or a folder without any ``*.txt`` file.
        ValueError: A file that is not UTF-8, or no text in any file.
    """
    path = spec.path
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise FileNotFoundError(f"task {spec.name!r}: no *.txt file under '{path}'")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"task {spec.name!r}: `path` must be a text file or a folder, got '{path}'")
    documents = []
    for index in subset(len(files), spec.max_examples):
        file = files[index]
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"task {spec.name!r}: '{file}' is not UTF-8 text: {err.reason}") from None
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        documents.append(Document(index, name, text))
    if not any(document.text for document in documents):
        raise ValueError(f"task {spec.name!r}: '{path}' holds no text")
    return documents
