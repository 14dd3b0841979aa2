"""Which tasks to run: a task list from a YAML file or from mappings, each entry checked into a `TaskSpec`.

A task list in YAML (``path`` relative to the YAML file)::

    tasks:
      - name: next_sentence
        path: next_sentence.jsonl
        type: multiple_choice       # {"query", "choices", "gold"}: context = query, continuation = " " + choice
        num_fewshot: 2
      - name: winograd
        path: winograd.jsonl
        type: schema                # {"context_options", "continuation", "gold"}
      - name: lambada
        path: lambada.jsonl
        type: language_modeling     # {"context", "continuation"}: right when greedy decoding gives it exactly
        max_examples: 500
      - name: docs
        path: held_out/             # a .txt file, or a folder of them: each file a document
        type: bits_per_byte
      - name: arc
        type: lm_eval               # an lm-evaluation-harness task, by its name (lm-eval installed, data local)
        task: arc_easy_local
        path: lm_eval_tasks/        # optional: a folder of task YAMLs to look in before lm-eval's own
        num_fewshot: 5              # optional: the task's own default otherwise
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from lightning_gen._checks import check_int

__all__ = ["TaskSpec", "TaskType", "load_task_specs"]

TaskType = Literal["multiple_choice", "schema", "language_modeling", "bits_per_byte", "lm_eval"]
_TYPES: tuple[str, ...] = get_args(TaskType)


@dataclass(frozen=True)
class TaskSpec:
    """One task: where its examples are, how they become requests, and what chance scores.

    Args:
        name: The task's name in metric names (``eval/<name>/acc``); no ``/``.
        path: A JSON Lines file (``bits_per_byte``: a text file or a folder of ``*.txt`` files; ``lm_eval``: an
            optional folder of lm-eval task YAMLs, searched before lm-eval's own tasks).
        type: ``multiple_choice``, ``schema``, ``language_modeling``, ``bits_per_byte``, or ``lm_eval`` (an
            lm-evaluation-harness task named by ``task``; see `lightning_gen.lm_eval.load_lm_eval_tasks`).
        num_fewshot: Solved examples put before each question, drawn from the task's other examples with a fixed
            seed per question (the same every round and on every process). None: 0, or for ``lm_eval`` the
            task's own default.
        continuation_delimiter: What joins a context and its continuation (a choice, the schema's continuation).
            An ``lm_eval`` task takes its delimiters from its YAML (``target_delimiter``, ``fewshot_delimiter``).
        fewshot_delimiter: What separates the few-shot examples from each other and from the question.
        random_baseline: The accuracy of guessing, in [0, 1), for ``centered``; by default the mean of
            ``1 / number of choices`` over the examples (0 for ``language_modeling``).
        max_examples: Score this many examples, picked once with a fixed seed; all by default. For
            ``bits_per_byte`` it counts documents; for ``lm_eval`` it is lm-eval's ``limit`` (its first documents).
        task: The lm-eval task's name, for ``type: lm_eval`` only.

    Raises:
        ValueError: A value out of range, a ``/`` in ``name``, few-shot examples for ``bits_per_byte``, ``task``
            missing for ``lm_eval`` or given for another type, or delimiters given for ``lm_eval``.

    Example::

        >>> TaskSpec("arc", "arc.jsonl", "multiple_choice", num_fewshot=5).num_fewshot
        5
        >>> TaskSpec("hellaswag", None, "lm_eval", task="hellaswag").num_fewshot is None   # the task's default
        True
    """

    name: str
    path: Path | None
    type: TaskType
    num_fewshot: int | None = None
    continuation_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    random_baseline: float | None = None
    max_examples: int | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"`name` must be a non-empty string without '/', got {self.name!r}")
        if self.type not in _TYPES:
            raise ValueError(f"task {self.name!r}: `type` must be one of {list(_TYPES)}, got {self.type!r}")
        if not (isinstance(self.path, (str, os.PathLike)) or (self.path is None and self.type == "lm_eval")):
            raise TypeError(f"task {self.name!r}: `path` must be a path, got {self.path!r}")
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))
        self._check_lm_eval()
        check_int("num_fewshot", self.num_fewshot, low=0, allow_none=True)
        if self.num_fewshot is None and self.type != "lm_eval":
            object.__setattr__(self, "num_fewshot", 0)
        check_int("max_examples", self.max_examples, allow_none=True)
        for name in ("continuation_delimiter", "fewshot_delimiter"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"task {self.name!r}: `{name}` must be a string, got {getattr(self, name)!r}")
        baseline = self.random_baseline
        if baseline is not None and not (isinstance(baseline, (int, float)) and not isinstance(baseline, bool)
                                         and 0.0 <= baseline < 1.0):
            raise ValueError(f"task {self.name!r}: `random_baseline` must be in [0, 1), got {baseline!r}")
        if self.type == "bits_per_byte" and self.num_fewshot:
            raise ValueError(f"task {self.name!r}: `num_fewshot` must be 0 for bits_per_byte, got {self.num_fewshot}")

    def _check_lm_eval(self) -> None:
        if self.type != "lm_eval":
            if self.task is not None:
                raise ValueError(f"task {self.name!r}: `task` names an lm-eval task and needs `type: lm_eval`, got "
                                 f"type {self.type!r}")
            return
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task {self.name!r}: `task` must name an lm-eval task for type lm_eval, got "
                             f"{self.task!r}")
        if (self.continuation_delimiter, self.fewshot_delimiter) != (" ", "\n\n"):
            raise ValueError(f"task {self.name!r}: an lm-eval task takes its delimiters from its YAML "
                             "(`target_delimiter`, `fewshot_delimiter`); leave `continuation_delimiter` and "
                             "`fewshot_delimiter` out")


_FIELDS = tuple(field.name for field in dataclasses.fields(TaskSpec))


def _spec(entry: Any, where: str, root: Path | None) -> TaskSpec:
    if isinstance(entry, TaskSpec):
        return entry
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a mapping with {list(_FIELDS)}, got {entry!r}")
    unknown = sorted(set(entry) - set(_FIELDS))
    required = ("name", "type", "task") if entry.get("type") == "lm_eval" else ("name", "path", "type")
    missing = [name for name in required if name not in entry]
    if unknown or missing:
        problem = f"has unknown field(s) {unknown}" if unknown else f"lacks {missing}"
        raise ValueError(f"{where} {problem}; a task's fields are {list(_FIELDS)}")
    values = {"path": None, **entry}
    if root is not None and isinstance(values["path"], (str, os.PathLike)):
        values["path"] = root / values["path"]  # an absolute path stays as it is
    try:
        return TaskSpec(**values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{where}: {err}") from None


def load_task_specs(tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | TaskSpec]) -> list[TaskSpec]:
    """The task list: a YAML file whose ``tasks:`` is a list of mappings (their ``path`` relative to the file),
    or such a list itself (paths relative to the working directory), or `TaskSpec` objects.

    Raises:
        FileNotFoundError: The YAML file does not exist.
        ValueError: Unreadable YAML, no ``tasks:`` list, an unknown or missing field, two tasks with one name,
            or a value `TaskSpec` refuses (the message names the entry).

    Example::

        >>> [spec.name for spec in load_task_specs([{"name": "arc", "path": "arc.jsonl", "type": "schema"}])]
        ['arc']
    """
    root: Path | None = None
    if isinstance(tasks, (str, os.PathLike)):
        entries, root = _read_yaml(Path(tasks)), Path(tasks).parent
        source = f"'{tasks}'"
    elif isinstance(tasks, Sequence):
        entries, source = list(tasks), "`tasks`"
    else:
        raise TypeError(f"`tasks` must be a YAML file's path or a list of task mappings, got {type(tasks).__name__}")
    if not entries:
        raise ValueError(f"{source} lists no task")
    specs = [_spec(entry, f"{source} task {i}", root) for i, entry in enumerate(entries)]
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"{source} names more than one task {twice}: each task needs its own `name`")
    return specs


def _read_yaml(path: Path) -> list[Any]:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"`tasks` must be a YAML file or a list of tasks, got '{path}', which is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"'{path}' is not valid YAML: {err}") from None
    entries = data.get("tasks") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError(f"'{path}' must hold a mapping with a `tasks:` list, got {type(data).__name__}")
    return entries

