"""Tasks read and tokenized once, scored on any subset of their items, and turned into metrics and records.

The life of an evaluation, as a callback drives it (every function here is pure of Lightning)::

    tasks = load_tasks("tasks.yaml", tokenizer=tok, context_length=1024)          # once, at setup
    scores = score_tasks(model, tasks, shard=(rank, world_size))                    # every round, on each process
    scores = merge_scores(all_gather_object(scores))                               # every item, once
    metrics = evaluation_metrics(tasks, scores)  # {"next_sentence/acc": ..., "docs/bpb": ..., "core": ...}
    records = [task.record(step, scores[task.name]) for task in tasks]  # (a task's metrics may be handed in)

An *item* is what is sharded: an example of a choice or language-modelling task, a rolling window of a
bits-per-byte task (each window belongs to one document), a document of an lm-evaluation-harness task (a
`lightning_gen.lm_eval.LmEvalTask`, loaded only where a task list names one). Its scores are the
``(log-likelihood, is_greedy)`` of its requests, small and picklable, so gathering them costs little.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from lightning_gen.decoding.adapters import AdapterName, ModelAdapter
from lightning_gen.decoding.likelihood import loglikelihood_tokens
from lightning_gen.evaluation import metrics as m
from lightning_gen.evaluation.encoding import RequestEncoder
from lightning_gen.evaluation.formats import Document, Example, read_documents, read_examples
from lightning_gen.evaluation.specs import TaskSpec, load_task_specs
from lightning_gen.text.task_records import document_result, example_result, task_record

__all__ = ["BaseTask", "Score", "ScoredTask", "Task", "evaluation_metrics", "load_tasks", "merge_scores",
           "named_metrics", "score_tasks", "token_request"]

Score = tuple[float, bool]
TokenRequest = tuple[tuple[int, ...], tuple[int, ...]]


@runtime_checkable
class ScoredTask(Protocol):
    """What `score_tasks`, `evaluation_metrics` and a callback need of a task: `Task` is one; a wrapper of another
    harness's task (lm-eval's, say: its documents as items, its ``process_results`` and aggregation as metrics)
    can be another."""

    name: str
    items: Sequence[Sequence[TokenRequest]]

    def __len__(self) -> int: ...

    def shard(self, rank: int, world_size: int) -> range: ...

    def metrics(self, scores: Mapping[int, Sequence[Score]]) -> dict[str, float]: ...

    def record(self, step: int, scores: Mapping[int, Sequence[Score]],
               metrics: Mapping[str, float] | None = None) -> dict[str, Any]: ...


class BaseTask:
    """What every task built from a task list's entry shares: its name, its items and how they are sharded over
    processes, the check that a round's scores cover every item, and the chance level that centres its accuracy
    (the spec's ``random_baseline``, else the task's own `_chance`). `Task` and `~lightning_gen.lm_eval.LmEvalTask`
    are ones."""

    spec: TaskSpec
    items: Sequence[Sequence[TokenRequest]]

    @property
    def name(self) -> str:
        return self.spec.name

    def __len__(self) -> int:
        return len(self.items)

    def shard(self, rank: int, world_size: int) -> range:
        """The items process ``rank`` of ``world_size`` scores: every ``world_size``-th, from ``rank`` (strided, so
        that every process gets a like share of long and short items)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"`rank` must be in [0, {world_size}), got {rank}")
        return range(rank, len(self.items), world_size)

    @property
    def random_baseline(self) -> float:
        """The accuracy of guessing: the spec's, else the task's own estimate."""
        return float(self.spec.random_baseline) if self.spec.random_baseline is not None else self._chance()

    def _chance(self) -> float:
        raise NotImplementedError

    def _complete(self, scores: Mapping[int, Sequence[Score]]) -> list[Sequence[Score]]:
        """The scores of every item, in order (raises where one process's scores, not all of them, were given)."""
        missing = [i for i in range(len(self.items)) if i not in scores]
        if missing:
            raise ValueError(f"task {self.name!r}: scores lack {len(missing)} of its {len(self.items)} items "
                             f"(first {missing[:5]}); gather every process's scores before the metrics")
        return [scores[i] for i in range(len(self.items))]


@dataclass(frozen=True)
class Task(BaseTask):
    """A task ready to score: its examples (or documents) and, per item, the token ids of its requests.

    Attributes:
        spec: What the task list said.
        sources: The examples (``bits_per_byte``: the documents) the items come from.
        items: Per item, its ``(context_ids, continuation_ids)`` requests.
        source_of: Per item, the position in ``sources`` it comes from.
    """

    spec: TaskSpec
    sources: tuple[Example, ...] | tuple[Document, ...]
    items: tuple[tuple[TokenRequest, ...], ...]
    source_of: tuple[int, ...]

    def _chance(self) -> float:
        """The mean chance of a guess over the examples (0 for language modelling)."""
        if self.spec.type in ("language_modeling", "bits_per_byte"):
            return 0.0
        return m.mean([1.0 / len(example.requests) for example in self.sources])

    def metrics(self, scores: Mapping[int, Sequence[Score]]) -> dict[str, float]:
        """The task's metrics from the scores of all its items: ``acc``, ``acc_norm`` (choice tasks), ``loss``
        (language modelling: nats per continuation token), ``centered``; or ``bpb``."""
        return self._metrics(self._complete(scores))

    def _metrics(self, per_item: Sequence[Sequence[Score]],
                 outcomes: Sequence[dict[str, Any]] | None = None) -> dict[str, float]:
        if self.spec.type == "bits_per_byte":
            total = sum(ll for item in per_item for ll, _ in item)
            return {"bpb": m.bits_per_byte(total, sum(document.num_bytes for document in self.sources))}
        if outcomes is None:
            outcomes = [self._outcome(i, item) for i, item in enumerate(per_item)]
        acc = m.mean([float(outcome["correct"]) for outcome in outcomes])
        result = {"acc": acc}
        if self.spec.type == "language_modeling":
            tokens = sum(len(continuation) for item in self.items for _, continuation in item)
            result["loss"] = -sum(item[0][0] for item in per_item) / tokens
        else:
            result["acc_norm"] = m.mean([float(outcome["correct_norm"]) for outcome in outcomes])
        result["centered"] = m.centered(acc, self.random_baseline)
        return result

    def _outcome(self, item: int, scores: Sequence[Score]) -> dict[str, Any]:
        example = self.sources[self.source_of[item]]
        lls = [ll for ll, _ in scores]
        if self.spec.type == "language_modeling":
            return example_result(example.index, correct=scores[0][1], loglikelihoods=lls)
        prediction = m.best(lls)
        norm = m.best([ll / length for ll, length in zip(lls, example.lengths)])
        return example_result(example.index, correct=prediction == example.gold, loglikelihoods=lls,
                              prediction=prediction, gold=example.gold, correct_norm=norm == example.gold)

    def record(self, step: int, scores: Mapping[int, Sequence[Score]],
               metrics: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The task's record at ``step`` (`~lightning_gen.text.task_records.task_record`): its metrics (``metrics``
        where the caller has them already from these scores), and per example what was right (``bits_per_byte``:
        per document, its bits per byte)."""
        per_item = self._complete(scores)
        if self.spec.type == "bits_per_byte":
            totals = [0.0] * len(self.sources)
            for item, item_scores in enumerate(per_item):
                totals[self.source_of[item]] += sum(ll for ll, _ in item_scores)
            entries = [document_result(doc.index, doc.name, m.bits_per_byte(total, doc.num_bytes) if doc.num_bytes
                                       else float("nan")) for doc, total in zip(self.sources, totals)]
            outcomes = None
        else:
            entries = outcomes = [self._outcome(i, item) for i, item in enumerate(per_item)]
        metrics = metrics if metrics is not None else self._metrics(per_item, outcomes)
        return task_record(step, self.name, self.spec.type, metrics, entries)


def _tokenized(spec: TaskSpec, encoder: RequestEncoder, context_length: int | None) -> Task:
    if spec.type == "bits_per_byte":
        documents = read_documents(spec)
        items, source_of = [], []
        for position, document in enumerate(documents):
            for context, continuation in encoder.rolling(document.text, context_length):
                items.append(((tuple(context), tuple(continuation)),))
                source_of.append(position)
        return Task(spec, tuple(documents), tuple(items), tuple(source_of))
    examples = read_examples(spec)
    items = tuple(tuple(token_request(*encoder.pair(*request), context_length=context_length,
                                      where=f"task {spec.name!r}: '{spec.path}' line {example.line}, request {k}")
                        for k, request in enumerate(example.requests)) for example in examples)
    return Task(spec, tuple(examples), items, tuple(range(len(examples))))


def token_request(
    context_ids: Sequence[int], continuation_ids: Sequence[int], *, context_length: int | None, where: str
) -> TokenRequest:
    """An encoded ``(context, continuation)`` request, checked once at load: at least one token each, and a
    continuation that fits the context length. ``where`` names the request in the error.

    Raises:
        ValueError: A side that encodes to no token, or a continuation longer than ``context_length``.

    Example::

        >>> token_request([5, 6], [7], context_length=8, where="task 't', request 0")
        ((5, 6), (7,))
    """
    if not context_ids or not continuation_ids:
        raise ValueError(f"{where}: its {'context' if not context_ids else 'continuation'} encodes to no token, "
                         "and a log-likelihood needs one of each")
    if context_length is not None and len(continuation_ids) > context_length:
        raise ValueError(f"{where}: its continuation is {len(continuation_ids)} tokens, more than the context "
                         f"length {context_length}")
    return tuple(context_ids), tuple(continuation_ids)


def load_tasks(
    tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | TaskSpec],
    *,
    tokenizer: Any,
    context_length: int | None,
) -> list[ScoredTask]:
    """Read and tokenize every task once (see `~lightning_gen.evaluation.specs.load_task_specs` for ``tasks``).

    Tasks of ``type: lm_eval`` are lm-evaluation-harness's, loaded by `lightning_gen.lm_eval.load_lm_eval_tasks`
    (a `~lightning_gen.lm_eval.LmEvalTask` each); the others are `Task` objects.

    Args:
        tokenizer: Anything `~lightning_gen.load_tokenizer` takes; requests are encoded as lm-eval's ``HFLM``
            encodes them (`~lightning_gen.evaluation.encoding.RequestEncoder`).
        context_length: The model's; it cuts bits-per-byte texts into windows, and no continuation may be longer.
            None: no limit (one window per document).

    Raises:
        FileNotFoundError, ValueError: A task list, file, line or field that cannot be used, named in the message;
            an lm-eval task that is unknown, generates text or whose data is not local.
        ImportError: The list names an lm-eval task and lm-eval is not installed (the ``lm-eval`` extra).
    """
    encoder = RequestEncoder(tokenizer)
    specs = load_task_specs(tasks)
    harness = [spec for spec in specs if spec.type == "lm_eval"]
    loaded = dict(zip([spec.name for spec in harness], _lm_eval_tasks(harness, encoder, context_length)))
    return [loaded[spec.name] if spec.type == "lm_eval" else _tokenized(spec, encoder, context_length)
            for spec in specs]


def _lm_eval_tasks(specs: list[TaskSpec], encoder: RequestEncoder, context_length: int | None) -> list[ScoredTask]:
    if not specs:
        return []
    try:  # lm-eval is an optional extra: imported only where a task list names one of its tasks
        from lightning_gen.lm_eval import load_lm_eval_tasks
    except ImportError as err:
        raise ImportError(f"task {specs[0].name!r} is an lm-eval task ({specs[0].task!r}): {err}") from err
    return list(load_lm_eval_tasks(specs, encoder=encoder, context_length=context_length))


def score_tasks(
    model: nn.Module,
    tasks: Sequence[ScoredTask],
    *,
    shard: tuple[int, int] = (0, 1),
    items: Mapping[str, Sequence[int]] | None = None,
    batch_size: int | None = None,
    adapter: ModelAdapter | AdapterName | type[ModelAdapter] | None = None,
    context_length: int | None = None,
    all_finished: Callable[[bool], bool] | None = None,
) -> dict[str, dict[int, list[Score]]]:
    """Score this process's items of every task in one pass (requests of all tasks share the forwards).

    Args:
        shard: ``(rank, world_size)``: each task's items ``rank, rank + world_size, ...``.
        items: The item indices per task name to score instead of the shard's (a task left out scores none).
        batch_size, adapter, context_length, all_finished: As
            `~lightning_gen.decoding.likelihood.loglikelihood_tokens`.

    Returns:
        ``{task name: {item index: [(log-likelihood, is_greedy) per request]}}``.
    """
    chosen = {task.name: (items.get(task.name, ()) if items is not None else task.shard(*shard)) for task in tasks}
    requests: list[TokenRequest] = []
    for task in tasks:
        for index in chosen[task.name]:
            requests.extend(task.items[index])
    flat = loglikelihood_tokens(model, requests, batch_size=batch_size, adapter=adapter,
                                context_length=context_length, all_finished=all_finished)
    scores: dict[str, dict[int, list[Score]]] = {}
    position = 0
    for task in tasks:
        scores[task.name] = {}
        for index in chosen[task.name]:
            count = len(task.items[index])
            scores[task.name][int(index)] = flat[position:position + count]
            position += count
    return scores


def merge_scores(parts: Sequence[Mapping[str, Mapping[int, Sequence[Score]]]]) -> dict[str, dict[int, list[Score]]]:
    """Scores gathered from every process, as one: each item must come from exactly one of them.

    Raises:
        ValueError: An item scored by two processes.

    Example::

        >>> merge_scores([{"t": {0: [(-1.0, True)]}}, {"t": {1: [(-2.0, False)]}}])
        {'t': {0: [(-1.0, True)], 1: [(-2.0, False)]}}
    """
    merged: dict[str, dict[int, list[Score]]] = {}
    for part in parts:
        for name, task_scores in part.items():
            into = merged.setdefault(name, {})
            for index, item_scores in task_scores.items():
                if index in into:
                    raise ValueError(f"task {name!r}: item {index} was scored twice; each process must score its "
                                     "own items (`shard`)")
                into[index] = [(float(ll), bool(greedy)) for ll, greedy in item_scores]
    return {name: dict(sorted(task_scores.items())) for name, task_scores in merged.items()}


def evaluation_metrics(
    tasks: Sequence[ScoredTask], scores: Mapping[str, Mapping[int, Sequence[Score]]]
) -> dict[str, float]:
    """Every task's metrics as ``"<task>/<metric>"``, and ``"core"``: the mean centred accuracy of the tasks that
    have one (all but bits per byte)."""
    return named_metrics({task.name: task.metrics(scores.get(task.name, {})) for task in tasks})


def named_metrics(per_task: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each task's metrics (``{task: {metric: value}}``) as ``"<task>/<metric>"``, and ``"core"``: the mean centred
    accuracy of the tasks that have one.

    Example::

        >>> named_metrics({"a": {"acc": 0.5, "centered": 0.2}, "b": {"bpb": 1.5}})
        {'a/acc': 0.5, 'a/centered': 0.2, 'b/bpb': 1.5, 'core': 0.2}
    """
    result: dict[str, float] = {}
    centred = []
    for task, metrics in per_task.items():
        for name, value in metrics.items():
            result[f"{task}/{name}"] = value
            if name == "centered":
                centred.append(value)
    if centred:
        result["core"] = m.core(centred)
    return result
