"""`TaskMonitor`: score log-likelihood tasks and held-out text during training and log what the model knows."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any, Literal

import lightning.pytorch as pl
from typing_extensions import override

from lightning_gen.decoding.adapters import ModelAdapter
from lightning_gen.evaluation.specs import TaskSpec, load_task_specs
from lightning_gen.evaluation.tasks import (
    ScoredTask,
    Task,
    load_tasks,
    merge_scores,
    named_metrics,
    score_tasks,
)
from lightning_gen.monitor.base import ScheduledMonitor
from lightning_gen.monitor.console import ConsoleMode
from lightning_gen.monitor.distributed import DistributedMode, LockstepVote
from lightning_gen.monitor.forward_checks import ProbeError, first_forward, longest_accepted
from lightning_gen.text.task_records import (
    TASK_EXAMPLES_FILE,
    TASK_RECORDS_FILE,
    document_header,
    example_header,
    task_header,
)
from lightning_gen.text.tokenization import TextTokenizer

__all__ = ["TaskMonitor"]


class TaskMonitor(ScheduledMonitor):
    """Score tasks at scheduled steps and log what the model knows, without disturbing training.

    Each round scores every task's requests with `lightning_gen.loglikelihood`'s semantics (lm-evaluation-harness's
    ``loglikelihood`` with ``logits_cache=False``: the continuation's summed log-probability and whether it is the
    greedy one), many requests per forward, in eval mode under `torch.no_grad`, every module as it was afterwards.
    It shares `GenerationMonitor`'s machinery (`lightning_gen.monitor.base`): the schedule, the network found in the
    LightningModule, the probe at the start of fit, the distributed modes (items strided over data-parallel
    processes, scored once each; sharded models gathered or in lockstep), the failure guards and resume.

    Logged to every logger, at every round: ``{tag}/<task>/acc``, ``{tag}/<task>/acc_norm`` (choice tasks: the
    log-likelihood divided by the choice's length in characters, as lm-eval), ``{tag}/<task>/centered`` (accuracy
    above chance, ``(acc - b) / (1 - b)``), ``{tag}/<task>/loss`` (language modelling: nats per continuation
    token), ``{tag}/<task>/bpb`` (held-out text: bits per byte, bytes counted from the text), ``{tag}/core`` (the
    mean centred accuracy, as nanochat's CORE) and ``{tag}/seconds``. Per example, what was right goes to the run's
    ``evaluations.jsonl``, so two steps can be compared example by example (the Samples dashboard shows the flips),
    and once per run what each example is (its question, choices and gold) to ``evaluation_examples.jsonl``.

    Args:
        tasks: A YAML file (``tasks:`` a list; paths relative to it) or a list of mappings, each with ``name``,
            ``path``, ``type`` (``multiple_choice`` ``{"query", "choices", "gold"}``, ``schema``
            ``{"context_options", "continuation", "gold"}``, ``language_modeling`` ``{"context",
            "continuation"}``, ``bits_per_byte``: a text file or a folder of them) and optionally ``num_fewshot``,
            ``continuation_delimiter``, ``random_baseline``, ``max_examples`` (see
            `lightning_gen.evaluation.specs.TaskSpec`).
        tokenizer: None to use ``pl_module.tokenizer``, then ``trainer.datamodule.tokenizer``; an object with
            ``encode``/``decode``; or a path (as `GenerationMonitor`'s). Requests are encoded as lm-eval's ``HFLM``
            encodes them (a Hugging Face tokenizer's default special tokens included).
        every_n_train_steps: Evaluate when ``global_step`` is a multiple of this.
        every_n_epochs: Evaluate at the end of every n-th training epoch.
        train_time_interval: Evaluate when this much time has passed since the last round.
        evaluate_on_train_start: Evaluate before the first step (step 0, the baseline).
        evaluate_on_train_end: Evaluate after the last step.
        evaluate_on_validation: Also evaluate whenever validation runs during fit (the sanity check excepted).
        batch_size: Most requests per forward; None fills forwards up to 2048 padded tokens.
        model_attr: Dotted attribute of the LightningModule to score (as `GenerationMonitor`'s).
        adapter: How to call the network (as `GenerationMonitor`'s).
        context_length: The model's context; when None, what it advertises, else found by the probe. Longer
            requests keep their last tokens, as lm-eval; held-out text is cut into windows of it.
        tag: Prefix of the logged metrics.
        on_error: What a failure while evaluating does: ``"warn"`` warns and training goes on, ``"raise"``
            re-raises. A probe that runs out of memory warns under ``"warn"`` and runs again before the first
            round; any other probe failure stops the run before step 1.
        distributed: As `GenerationMonitor`'s: ``"shard"`` strides items over processes, ``"gather"`` gathers a
            sharded model's parameters once per round then shards, ``"lockstep"`` scores every item on every
            process together, ``"rank_zero"`` on global rank 0 only; ``"auto"`` picks.
        empty_cache: Release cached GPU memory after each round.
        console: What global rank 0 prints: ``"rounds"`` the plan the probe settled and a line per round with each
            task's main metric; ``"off"`` nothing.

    Raises:
        ValueError: A value out of range for any argument, or a task entry that cannot be used, naming it.
        TypeError: A value of the wrong type, naming the argument.
        FileNotFoundError: ``tasks``, a task's ``path`` or ``tokenizer`` names a file that does not exist.

    Example::

        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from lightning.pytorch import Trainer
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "colors.jsonl").write_text(json.dumps(
        ...     {"query": "The sky is", "choices": ["blue", "green"], "gold": 0}) + "\\n")
        >>> monitor = TaskMonitor([{"name": "colors", "path": str(folder / "colors.jsonl"),
        ...                         "type": "multiple_choice"}], every_n_train_steps=100)
        >>> trainer = Trainer(callbacks=[monitor], logger=False, enable_progress_bar=False)
    """

    _label = "TaskMonitor"
    _activity = "evaluation"
    _evaluates = True
    _when = ("evaluate_on_train_start", "evaluate_on_train_end", "evaluate_on_validation")

    def __init__(
        self,
        tasks: str | list[dict[str, Any]],
        tokenizer: str | TextTokenizer | None = None,
        *,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        train_time_interval: timedelta | None = None,
        evaluate_on_train_start: bool = True,
        evaluate_on_train_end: bool = True,
        evaluate_on_validation: bool = False,
        batch_size: int | None = None,
        model_attr: str | None = None,
        adapter: str | type[ModelAdapter] | ModelAdapter | None = None,
        context_length: int | None = None,
        tag: str = "eval",
        on_error: Literal["warn", "raise"] = "warn",
        distributed: DistributedMode = "auto",
        empty_cache: bool = False,
        console: ConsoleMode = "rounds",
    ) -> None:
        super().__init__()
        self.tasks: list[TaskSpec] = load_task_specs(tasks)  # every entry checked now, its files read at setup
        self._configure(
            tokenizer=tokenizer, schedule=dict(every_n_train_steps=every_n_train_steps, every_n_epochs=every_n_epochs,
                                               train_time_interval=train_time_interval),
            switches=dict(evaluate_on_train_start=evaluate_on_train_start, evaluate_on_train_end=evaluate_on_train_end,
                          evaluate_on_validation=evaluate_on_validation),
            model_attr=model_attr, adapter=adapter, context_length=context_length, batch_size=batch_size, tag=tag,
            on_error=on_error, distributed=distributed, empty_cache=empty_cache, console=console)
        self._loaded: list[ScoredTask] = []
        self._headers_written_to: str | None = None

    # ----------------------------------------------------------------- setup: the tasks, read and tokenized once
    @override
    def _prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loaded = load_tasks(self.tasks, tokenizer=self._tokenizer, context_length=self._target.context)

    # ----------------------------------------------------------------- the probe
    @override
    def _probe(self, trainer: pl.Trainer, model: Any, vote: LockstepVote | None) -> int | None:
        """Logits for every position, and the longest request the model takes: a context found by probing where
        none is known (the tasks are then tokenized again, cut to it)."""
        runner = self._target.runner_for(model)
        first = next(((task.name, requests[0]) for task in self._loaded for requests in task.items if requests), None)
        if first is None:
            raise ProbeError("`tasks` hold no request to score")
        name, (context, continuation) = first
        logits = first_forward(model, runner, list(context + continuation), named=f"task {name!r}",
                               activity="scoring", network=self._target.network.name)
        if logits.dim() != 3 or logits.shape[1] < 2:
            raise ProbeError(f"the model returns logits for the last position only, shape {tuple(logits.shape)}; "
                             "scoring a continuation needs every position's (pass an `adapter` whose "
                             "`sequence_logits` returns them)")
        longest = max((list(c + k) for task in self._loaded for requests in task.items for c, k in requests), key=len)
        needed = min(len(longest) - 1, self._target.context) if self._target.context else len(longest) - 1
        accepted = longest_accepted(model, runner, longest, needed)
        if accepted >= needed:
            return None
        if self._target.context is not None:
            raise ProbeError(f"the model refuses a sequence of {needed} tokens although its context is "
                             f"{self._target.context} ({self._target.context_source}); it takes up to {accepted} "
                             f"(found by probing): set `context_length={accepted}`")
        return accepted

    @override
    def _apply(self, results: list[int | None]) -> None:
        found = [n for n in results if n is not None]
        if found and self._target.context is None:
            self._target = self._target.with_context(min(found), "found by probing")
            self._loaded = load_tasks(self.tasks, tokenizer=self._tokenizer, context_length=self._target.context)
        target = self._target
        context = f"context {target.context} ({target.context_source})" if target.context else "context unknown"
        counts = ", ".join(f"{task.name} ({len(task)})" for task in self._loaded)
        self._say(f"TaskMonitor: scoring `{target.network.name}` ({type(target.network.called).__name__}); "
                  f"{context}; tasks {counts}")

    # ----------------------------------------------------------------- one round
    @override
    def _round(self, trainer: pl.Trainer, model: Any, vote: LockstepVote | None,
               shard: tuple[int, int]) -> list[dict[str, dict[int, list[tuple[float, bool]]]]]:
        runner = self._target.runner_for(model)
        return [score_tasks(model, self._loaded, shard=shard, batch_size=self.batch_size, adapter=runner,
                            context_length=self._target.context, all_finished=vote)]

    @override
    def _publish(self, trainer: pl.Trainer, step: int, items: list[Any], seconds: float) -> list[dict[str, Any]]:
        scores = merge_scores(items)
        per_task = {task.name: task.metrics(scores.get(task.name, {})) for task in self._loaded}
        metrics = named_metrics(per_task)
        scalars = {f"{self.tag}/{name}": value for name, value in metrics.items()} | {f"{self.tag}/seconds": seconds}
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        records = [task.record(step, scores.get(task.name, {}), per_task[task.name]) for task in self._loaded]
        if self._records_dir is not None:
            os.makedirs(self._records_dir, exist_ok=True)
            if self._headers_written_to != self._records_dir:  # once per run: what each example is
                _append_lines(os.path.join(self._records_dir, TASK_EXAMPLES_FILE), _headers(self._loaded))
                self._headers_written_to = self._records_dir
            _append_lines(os.path.join(self._records_dir, TASK_RECORDS_FILE), records)
        self._say(_round_line(step, metrics, seconds), trainer)
        return records


def _append_lines(path: str, objects: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects)


def _headers(tasks: list[ScoredTask]) -> list[dict[str, Any]]:
    """Each task's header (`~lightning_gen.text.task_records.task_header`): its examples' texts, or its documents'
    names; a task of another harness, which has no `Task.sources`, has none."""
    headers = []
    for task in tasks:
        if not isinstance(task, Task):
            continue
        spec = task.spec
        if spec.type == "bits_per_byte":
            entries = [document_header(document.index, document.name) for document in task.sources]
        else:
            entries = [example_header(example.index, example.requests, task_type=spec.type, gold=example.gold,
                                      fewshot=example.fewshot) for example in task.sources]
        headers.append(task_header(task.name, spec.type, entries, num_fewshot=spec.num_fewshot))
    return headers


def _round_line(step: int, metrics: dict[str, float], seconds: float) -> str:
    """``TaskMonitor: step 100: word_order acc 0.53, held_out bpb 2.59, core 0.22 (5.4 s)``: each task's first
    metric (accuracy, else bits per byte), then ``core``.

    Example::

        >>> _round_line(100, {"a/acc": 0.5312, "a/acc_norm": 0.5, "docs/bpb": 2.591, "core": 0.22}, 5.41)
        'TaskMonitor: step 100: a acc 0.531, docs bpb 2.59, core 0.22 (5.4 s)'
    """
    shown, seen = [], set()
    for key, value in metrics.items():
        task, _, metric = key.rpartition("/")
        if task and task not in seen and metric in ("acc", "bpb"):
            seen.add(task)
            shown.append(f"{task} {metric} {value:.3g}")
    if "core" in metrics:
        shown.append(f"core {metrics['core']:.2g}")
    return f"TaskMonitor: step {step}: {', '.join(shown)} ({seconds:.2g} s)"
