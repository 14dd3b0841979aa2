"""lm-evaluation-harness tasks in a task list (``type: lm_eval``): lm-eval's documents as items, its own
``process_results`` and aggregations as metrics. The task-list half of `lightning_gen.lm_eval`, which re-exports
`LmEvalTask` and `load_lm_eval_tasks`; import them from there (it says which extra to install without lm-eval).

lm-eval builds the requests (``TaskManager``, ``Task.build_all_requests``), `RequestEncoder` encodes them as
`~lightning_gen.lm_eval.LightningGenLM` does, `~lightning_gen.evaluation.tasks.score_tasks` scores them with the
other tasks' requests, and lm-eval turns the scores into its metrics: the numbers ``lm_eval.simple_evaluate`` gives
for the same model, sharded over processes like any task.
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from lm_eval.api.metrics import mean
from lm_eval.defaults import DEFAULT_OTHER_SEED, DEFAULT_RANDOM_SEED
from lm_eval.tasks import TaskManager

from lightning_gen.evaluation import metrics as m
from lightning_gen.evaluation.encoding import RequestEncoder
from lightning_gen.evaluation.specs import TaskSpec
from lightning_gen.evaluation.tasks import BaseTask, Score, TokenRequest, token_request
from lightning_gen.text.task_records import document_result, example_result, task_record

__all__ = ["LmEvalTask", "load_lm_eval_tasks"]


#: ``datasets``' packaged builders: a task over one of them reads its ``data_files`` (local ones: nothing downloaded).
_BUILDERS = ("json", "csv", "parquet", "arrow", "text", "pandas")
#: What a task of each lm-eval output type is recorded as (`~lightning_gen.text.task_records`).
_RECORD_TYPES = {"multiple_choice": "multiple_choice", "loglikelihood": "language_modeling",
                 "loglikelihood_rolling": "bits_per_byte"}


class LmEvalTask(BaseTask):
    """An lm-evaluation-harness task as a `~lightning_gen.evaluation.tasks.ScoredTask`: its documents are the
    items (each with the token ids of its requests), its ``process_results`` and aggregations give the metrics.

    Built by `load_lm_eval_tasks`. ``loglikelihood`` and ``multiple_choice`` requests are encoded as pairs
    (`~lightning_gen.evaluation.encoding.RequestEncoder.pair`), a ``loglikelihood_rolling`` text as its rolling
    windows, exactly as `LightningGenLM` encodes them, so the metrics equal ``lm_eval.simple_evaluate``'s.

    Attributes:
        spec: What the task list said.
        harness: lm-eval's task, its requests built (``harness.instances``).
        documents: ``(doc_id, doc)`` of each item, in lm-eval's order.
        instances: Per item, lm-eval's requests of that document (``Instance`` objects), in order.
        items: Per item, its ``(context_ids, continuation_ids)`` requests: one per instance, or the rolling windows
            of the document's text.
    """

    def __init__(self, spec: TaskSpec, harness: Any, *, encoder: RequestEncoder, context_length: int | None,
                 limit: int | None) -> None:
        self.spec = spec
        self.harness = harness
        self.documents = tuple(harness.doc_iterator(rank=0, limit=limit, world_size=1))
        by_document: dict[int, list[Any]] = {}
        for instance in harness.instances:
            by_document.setdefault(instance.doc_id, []).append(instance)
        self.instances = tuple(tuple(sorted(by_document[doc_id], key=lambda i: i.idx)) for doc_id, _ in self.documents)
        self.items = tuple(self._encode(doc_id, instances, encoder, context_length)
                           for (doc_id, _), instances in zip(self.documents, self.instances))
        # Per document, its number of choices (0: not a choice task), and the chance of guessing a gold one: fixed,
        # so found once rather than every round.
        choice = self.output_type == "multiple_choice"
        self._choices = tuple(len(harness.doc_to_choice(doc)) if choice else 0 for _, doc in self.documents)
        self._chance_level = m.mean([min(self._golds(doc), count) / count for (_, doc), count in
                                     zip(self.documents, self._choices)]) if choice else 0.0

    def _encode(self, doc_id: int, instances: Sequence[Any], encoder: RequestEncoder,
                context_length: int | None) -> tuple[TokenRequest, ...]:
        if self.output_type == "loglikelihood_rolling":
            [instance] = instances
            return tuple((tuple(c), tuple(k)) for c, k in encoder.rolling(instance.args[0], context_length))
        return tuple(token_request(*encoder.pair(*instance.args), context_length=context_length,
                                   where=f"task {self.name!r}: lm-eval document {doc_id}, request {instance.idx}")
                     for instance in instances)

    @property
    def output_type(self) -> str:
        """lm-eval's: ``multiple_choice``, ``loglikelihood`` or ``loglikelihood_rolling``."""
        return self.harness.OUTPUT_TYPE

    def _golds(self, doc: Any) -> int:
        gold = self.harness.doc_to_text(doc) if self.harness.multiple_input else self.harness.doc_to_target(doc)
        return len(gold) if isinstance(gold, list) else 1

    def _chance(self) -> float:
        """The mean chance of a guess over the documents (of hitting one of the golds where there are several);
        0 for ``loglikelihood``."""
        return self._chance_level

    def _results(self, scores: Mapping[int, Sequence[Score]]) -> dict[str, list[dict[str, Any]]]:
        """Per filter, per document, what lm-eval's ``process_results`` makes of the scores."""
        for instances, item_scores in zip(self.instances, self._complete(scores)):
            responses: list[Any] = list(item_scores)
            if self.output_type == "loglikelihood_rolling":
                responses = [float(sum(ll for ll, _ in responses))]
            for instance, response in zip(instances, responses, strict=True):
                instance.resps = [response] * instance.repeats
                instance.filtered_resps = {}
        self.harness.apply_filters()
        return {key: [self.harness.process_results(doc, [instance.filtered_resps[key] for instance in instances])
                      for (_, doc), instances in zip(self.documents, self.instances)]
                for key in self.instances[0][0].filtered_resps}

    def _aggregate(self, results: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for key, per_document in results.items():
            names = list(dict.fromkeys(name for values in per_document for name in values))
            for name in names:
                aggregate = self.harness.aggregation().get(name, mean)  # lm-eval's fallback too
                metric = name if key == "none" else f"{name},{key}"  # lm-eval's "acc,none", without "none"
                metrics[metric] = float(aggregate([values[name] for values in per_document if name in values]))
        if "acc" in metrics:
            metrics["centered"] = m.centered(metrics["acc"], self.random_baseline)
        return metrics

    def metrics(self, scores: Mapping[int, Sequence[Score]]) -> dict[str, float]:
        """lm-eval's metrics of the task (its ``metric_list``: ``acc``, ``acc_norm``, ``perplexity``,
        ``word_perplexity``, ``byte_perplexity``, ``bits_per_byte`` ...), and ``centered`` where it has ``acc``.
        Metrics of a filter other than lm-eval's ``none`` are named ``<metric>,<filter>``."""
        return self._aggregate(self._results(scores))

    def record(self, step: int, scores: Mapping[int, Sequence[Score]],
               metrics: Mapping[str, float] | None = None) -> dict[str, Any]:
        """The task's record at ``step``: its metrics and, per document, whether it was right (where the task has
        ``acc``; ``correct_norm`` where it has ``acc_norm``), or its bits per byte (``loglikelihood_rolling``)."""
        results = self._results(scores)
        per_document = results.get("none", next(iter(results.values())))
        entries: list[dict[str, Any]] = []
        for item, ((doc_id, doc), values) in enumerate(zip(self.documents, per_document)):
            lls = [ll for ll, _ in scores[item]]
            if self.output_type == "loglikelihood_rolling":
                size = self.harness.count_bytes(self.harness.doc_to_target(doc))
                entries.append(document_result(doc_id, f"{self.spec.task}[{doc_id}]",
                                               m.bits_per_byte(sum(lls), size) if size else float("nan")))
            elif "acc" in values:
                choices = self._choices[item]  # lm-eval's prediction: the likeliest choice (mutual-info lls after)
                entries.append(example_result(doc_id, correct=bool(values["acc"]), loglikelihoods=lls,
                                              prediction=m.best(lls[:choices]) if choices else None,
                                              correct_norm=bool(values["acc_norm"]) if "acc_norm" in values else None))
        metrics = metrics if metrics is not None else self._aggregate(results)
        return task_record(step, self.name, _RECORD_TYPES[self.output_type], metrics, entries)


def load_lm_eval_tasks(
    specs: Sequence[TaskSpec], *, encoder: RequestEncoder, context_length: int | None
) -> list[LmEvalTask]:
    """The lm-eval tasks a task list names (``type: lm_eval``), built offline and encoded once.

    Each ``task`` is looked up in the entry's ``path`` (a folder of task YAMLs), then among lm-eval's own tasks;
    its requests are built as ``lm_eval.simple_evaluate`` builds them (the task's ``num_fewshot`` unless the entry
    sets one, lm-eval's few-shot seed, ``max_examples`` as lm-eval's ``limit``, the global random generators seeded
    as lm-eval seeds them and restored afterwards, so the requests are the same on every process).

    Only log-likelihood tasks: ``multiple_choice``, ``loglikelihood`` and ``loglikelihood_rolling``. Nothing is
    downloaded: a task's data is local when its ``dataset_path`` is a local file or folder, or a packaged builder
    (``json``, ``csv``, ``parquet``, ``arrow``, ``text``, ``pandas``) whose ``dataset_kwargs.data_files`` all exist.
    A Hub dataset or a ``custom_dataset`` function is read only in offline mode (``HF_DATASETS_OFFLINE=1``), where
    ``datasets`` takes it from its cache.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        ValueError: An unknown task (the message lists close names), a group or tag, a task defined by a Python
            class, one that generates text (run those with `LightningGenLM` and ``lm_eval.simple_evaluate``), a
            multimodal one, one whose data is not local, or a ``num_fewshot`` the task fixes at 0.

    Example::

        >>> import tempfile
        >>> from pathlib import Path
        >>> from torch import nn
        >>> from lightning_gen.evaluation.tasks import evaluation_metrics, load_tasks, score_tasks
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "qa.jsonl").write_text('{"q": "Is it", "a": "yes"}\\n{"q": "Or", "a": "no"}\\n')
        >>> _ = (folder / "qa.yaml").write_text(
        ...     f"task: qa\\ndataset_path: json\\ndataset_kwargs: {{data_files: {{test: {folder}/qa.jsonl}}, "
        ...     f"cache_dir: {folder}}}\\ntest_split: test\\noutput_type: multiple_choice\\ndoc_to_text: q\\n"
        ...     "doc_to_choice: ['yes', 'no']\\ndoc_to_target: a\\n")
        >>> class Chars:
        ...     eos_token_id = 0
        ...     def encode(self, text): return [ord(c) % 64 for c in text]
        ...     def decode(self, ids): return "".join(chr(i + 32) for i in ids)
        >>> tasks = load_tasks([{"name": "qa", "type": "lm_eval", "task": "qa", "path": folder}],
        ...                    tokenizer=Chars(), context_length=32)
        >>> sorted(evaluation_metrics(tasks, score_tasks(nn.Embedding(64, 64), tasks)))
        ['core', 'qa/acc', 'qa/acc_norm', 'qa/centered']
    """
    managers: dict[tuple[Path | None, bool], TaskManager] = {}
    return [_load(spec, managers, encoder, context_length) for spec in specs]


def _load(spec: TaskSpec, managers: dict[tuple[Path | None, bool], TaskManager], encoder: RequestEncoder,
          context_length: int | None) -> LmEvalTask:
    where, name = f"task {spec.name!r}", f"lm-eval's {spec.task!r}"
    manager, entry = _find(spec, managers)
    kind = entry.kind.name  # lm-eval's index: TASK, PY_TASK (a Python class), GROUP or TAG
    if kind in ("GROUP", "TAG"):
        members = entry.tags or [t if isinstance(t, str) else t.get("task") for t in entry.cfg.get("task", [])]
        raise ValueError(f"{where}: {name} is a {kind.lower()} of tasks {sorted(map(str, members))}; give each of "
                         "them an entry of its own")
    if kind != "TASK":
        raise ValueError(f"{where}: {name} is defined by a Python class, whose data and requests cannot be checked "
                         "before it builds them; run it with `LightningGenLM` and `lm_eval.simple_evaluate`")
    config = entry.cfg
    output_type = config.get("output_type", "generate_until")  # lm-eval's TaskConfig default
    if output_type not in _RECORD_TYPES:
        raise ValueError(f"{where}: {name} has output type {output_type!r}, and a log-likelihood evaluation takes "
                         f"only {list(_RECORD_TYPES)}; run it with `LightningGenLM` and `lm_eval.simple_evaluate`")
    if config.get("doc_to_image") or config.get("doc_to_audio"):
        raise ValueError(f"{where}: {name} is multimodal, and a log-likelihood evaluation scores text only")
    reason = None if datasets.config.HF_HUB_OFFLINE else _not_local(config)
    if reason:
        raise ValueError(f"{where}: the data of {name} is not local ({reason}), and nothing is downloaded here; "
                         "point its YAML at local files (`dataset_path: json`, `dataset_kwargs: {data_files: ...}`), "
                         "or set HF_DATASETS_OFFLINE=1 to read a copy in the datasets cache")
    with _seeded():
        try:
            harness = manager.load([spec.task])["tasks"][spec.task]
        except OSError as err:  # offline mode, and not in the datasets cache
            raise ValueError(f"{where}: the data of {name} is not local: {err}") from err
        default = harness.get_config("num_fewshot")
        if spec.num_fewshot is not None and spec.num_fewshot != default:
            if default == 0:  # lm-eval never overrides a task that fixes 0 shots; neither do we, but loudly
                raise ValueError(f"{where}: {name} fixes num_fewshot: 0 in its YAML; leave `num_fewshot` out, "
                                 f"got {spec.num_fewshot}")
            harness.set_config(key="num_fewshot", value=spec.num_fewshot)
        elif default is None:
            harness.set_config(key="num_fewshot", value=0)
        harness.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)
        try:
            harness.build_all_requests(limit=spec.max_examples, rank=0, world_size=1)
        except Exception as err:
            err.add_note(f"while building the requests of {where} ({name})")
            raise
    return LmEvalTask(spec, harness, encoder=encoder, context_length=context_length, limit=spec.max_examples)


def _find(spec: TaskSpec, managers: dict[tuple[Path | None, bool], TaskManager]) -> tuple[TaskManager, Any]:
    """The manager and index entry of the task: from the entry's folder alone when it is there (indexing lm-eval's
    own thousands of tasks takes seconds), else from lm-eval's tasks and the folder."""

    def manager(defaults: bool) -> TaskManager:
        if (spec.path, defaults) not in managers:
            managers[spec.path, defaults] = TaskManager(
                include_path=None if spec.path is None else str(spec.path), include_defaults=defaults)
        return managers[spec.path, defaults]

    if spec.path is not None:
        if not spec.path.is_dir():
            raise FileNotFoundError(f"task {spec.name!r}: `path` must be a folder of lm-eval task YAMLs, got "
                                    f"'{spec.path}'")
        if spec.task in manager(False).task_index:
            return manager(False), manager(False).task_index[spec.task]
    if spec.task in manager(True).task_index:
        return manager(True), manager(True).task_index[spec.task]
    close = difflib.get_close_matches(spec.task, manager(True).all_tasks, n=5)
    folder = "" if spec.path is None else f"'{spec.path}' or "
    raise ValueError(f"task {spec.name!r}: `task` must name an lm-eval task in {folder}lm-eval's own, got "
                     f"{spec.task!r}" + (f"; close names: {close}" if close else ""))


def _not_local(config: Mapping[str, Any]) -> str | None:
    """Why ``datasets`` would download the task's data, or None when all of it is local."""
    if config.get("custom_dataset"):
        return "a `custom_dataset` function builds it"
    path, kwargs = config.get("dataset_path"), config.get("dataset_kwargs") or {}
    if not isinstance(path, str):
        return f"`dataset_path` is {path!r}"
    if path not in _BUILDERS:
        return None if Path(path).expanduser().exists() else f"`dataset_path: {path}` is no local file or folder"
    files, base = kwargs.get("data_files"), Path(kwargs.get("data_dir") or ".").expanduser()
    if files is None:
        return None if kwargs.get("data_dir") and base.is_dir() else f"`dataset_path: {path}` without `data_files`"
    patterns = [files] if isinstance(files, str) else list(files.values() if isinstance(files, Mapping) else files)
    for pattern in (p for group in patterns for p in ([group] if isinstance(group, str) else group)):
        if "://" in str(pattern):
            return f"data file '{pattern}' is a URL"
        if not glob.glob(str(base / Path(pattern).expanduser()), recursive=True):  # an absolute pattern stays
            return f"data file '{pattern}' does not exist"
    return None


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Python's, NumPy's and torch's global generators seeded as ``simple_evaluate`` seeds them (a task's own
    code may draw from them while its documents and few-shot examples are built), and restored afterwards: the
    same requests on every process, and training's random stream untouched."""
    state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(DEFAULT_RANDOM_SEED)
        np.random.seed(DEFAULT_OTHER_SEED)
        torch.manual_seed(DEFAULT_OTHER_SEED)
        try:
            yield
        finally:
            random.setstate(state)
            np.random.set_state(numpy_state)
