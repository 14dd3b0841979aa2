"""`GenerationMonitor`: sample fixed prompts during training and log what the model writes."""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from transformers import GenerationConfig, LogitsProcessor
from typing_extensions import override

from lightning_gen.decoding.adapters import ModelAdapter, watched_state
from lightning_gen.monitor._arguments import check_generation, check_processors, check_seed
from lightning_gen.monitor.base import ScheduledMonitor
from lightning_gen.monitor.console import ConsoleMode, round_line
from lightning_gen.monitor.distributed import DistributedMode, LockstepVote
from lightning_gen.monitor.plan import Plan, describe, settle_plan
from lightning_gen.monitor.probe import ProbeResult, merge_results, probe
from lightning_gen.monitor.tokenized_prompts import crop_prompts, encode_prompts, validation_prompts
from lightning_gen.monitor.round import sample_round
from lightning_gen.monitor.sinks import SampleSink, sinks_for
from lightning_gen.text.prompts import load_prompts
from lightning_gen.text.quality import summarize
from lightning_gen.text.records import RECORDS_FILE
from lightning_gen.text.samples import EncodedPrompts, Sample
from lightning_gen.text.tokenization import TextTokenizer
from lightning_gen._checks import check_int

__all__ = ["GenerationMonitor"]


class GenerationMonitor(ScheduledMonitor):
    """Complete the same prompts at scheduled steps and log the samples, without disturbing training.

    Each round runs `lightning_gen.generate` (Hugging Face's decoding) in eval mode under `torch.no_grad`, with
    a generator seeded with ``seed`` on the model's device: the same noise every round, so samples are
    comparable across steps; the round runs inside a fork of every global random stream (torch's, Python's,
    NumPy's), so training is bit-identical with or without the monitor, even for a model that draws from them
    at inference. Everything checkable is checked before the first training step: in ``__init__`` (bad
    configuration), in ``setup`` (tokenizer, network, generation configuration) and by the probe at the start of
    fit, which runs the round's real shape and settles what was not known (the context, the vocabulary the logits
    and the tokenizer cover, how prompts share a batch, whether samples can be scored; see
    `lightning_gen.monitor.probe`). What was settled, and where each value came from, is printed once.

    Args:
        prompts: Prompt strings, or a path to a ``.txt`` (one a line) or ``.jsonl`` file (``{"prompt": ...,
            "reference": ...}``).
        tokenizer: None to use ``pl_module.tokenizer``, then ``trainer.datamodule.tokenizer``; an object with
            ``encode``/``decode``; or a path to a ``tokenizer.json``, a local HF tokenizer folder, or a
            sentencepiece ``.model``.
        every_n_train_steps: Sample when ``global_step`` is a multiple of this.
        every_n_epochs: Sample at the end of every n-th training epoch.
        train_time_interval: Sample when this much time has passed since the last round.
        sample_on_train_start: Sample before the first step (step 0, a baseline).
        sample_on_train_end: Sample after the last step.
        sample_on_validation: Also sample whenever validation runs during fit (the sanity check excepted), to
            watch samples at the validation cadence; like every schedule, at most one round per global step.
        generation: `GenerationConfig` fields (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_k``,
            ``top_p`` ...) as a dict, or a `GenerationConfig`. ``max_new_tokens`` defaults to 64; EOS and pad ids
            default to the tokenizer's. Boolean fields must be bools.
        logits_processors: Extra transformers `LogitsProcessor` objects (a list, or one), merged as HF merges them.
        seed: Seed of the sampling generator, reset at every round.
        model_attr: Dotted attribute of the LightningModule to call (e.g. ``"model"``); None finds the network:
            the LightningModule when it has a cache protocol, a context length or a vocabulary of its own, else its
            one language-model child (``self.model`` ...), printed once at ``setup`` (see
            `lightning_gen.monitor.network`).
        adapter: How to call the network: None detects its protocol; a name (``"plain"``, ``"litgpt"``,
            ``"gpt-fast"``, ``"torchtune"``, ``"hf"``), a `ModelAdapter` subclass or its import path (from YAML),
            or a `ModelAdapter` instance.
        vocab_size: Sample only ids below this; None takes the smallest of the model's logits, its advertised
            vocabulary and the ids the tokenizer decodes (its size, ``n_vocab``, ``len()``, ``get_vocab()``, else
            found by asking its ``decode``), so a padded vocabulary (50304 logits for 50257 tokens) never yields ids
            that cannot be decoded.
        batch_size: Most prompts per forward; None puts them all in one batch (per length group).
        context_length: Context length of the model; when None, what the model advertises (``block_size``,
            ``config.n_positions`` ...), else found by the probe (the longest sequence its forward takes).
        tag: Prefix of the logged tags.
        on_error: What a failure while sampling does: ``"warn"`` warns and training goes on, ``"raise"`` re-raises.
            A probe that runs out of memory at the start of fit warns under ``"warn"`` and runs again before the
            first round; any other probe failure stops the run before step 1.
        also_greedy: Also decode greedily and show the greedy completion beside the sampled one.
        distributed: With several processes: ``"shard"`` splits the prompt batches over processes and gathers
            the samples to rank 0 (data-parallel strategies); ``"gather"`` (FSDP1, FSDP2 `fully_shard` under
            ModelParallelStrategy, DeepSpeed stage 3) gathers the full parameters once per round, then shards the
            batches as ``"shard"`` does, with no collective per token; ``"lockstep"`` runs every batch on every
            process with a synchronised stop (any sharded model: FSDP, DeepSpeed stage 3); ``"rank_zero"``
            samples on global rank 0 only (refused on sharded strategies, whose forward is a collective);
            ``"auto"`` picks shard for data-parallel strategies and, for sharded ones, gather when every process
            has room for the full parameters (half its free memory, at the start of fit), else lockstep.
        empty_cache: Release cached GPU memory after each round (``torch.cuda.empty_cache``).
        compile: Compile the one-token decode step of a KV-cache model (litgpt / gpt-fast protocol, or a
            transformers model over a static cache) with `torch.compile` (see `generate`); the first round pays the
            compilation (seconds to minutes).
        log_metrics: Log sample-quality scalars under ``{tag}/...`` to every logger: length, EOS rate,
            distinct-1/2, repeated 4-gram rate, tokens per second, and (when the model returns logits for every
            position) the samples' mean log-prob / perplexity and the reference loss.
        prompts_from_data: Also take this many prompts from the validation dataloader (the first examples, once).
        data_prompt_tokens: Tokens of each data example used as the prompt.
        data_reference_tokens: Tokens after that shown as the reference (the true continuation).
        console: What global rank 0 prints, above the progress bar while one shows, else through Lightning's
            logging: ``"rounds"`` the plan the probe settled, a line per round (``step 50: 6 samples, 3.2 s, 310
            tok/s``) and, when training ends, where the samples are and the commands that open them;
            ``"first_sample"`` also each round's first sample; ``"off"`` nothing.

    Raises:
        ValueError: A value out of range for any argument, naming it.
        TypeError: A value of the wrong type (``every_n_train_steps="5"``), naming the argument.
        FileNotFoundError: ``prompts`` or ``tokenizer`` names a file that does not exist.
        NotImplementedError: ``generation`` asks for beam search or another search mode.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> monitor = GenerationMonitor(["Once upon a time"], every_n_train_steps=100,
        ...                             generation={"max_new_tokens": 32, "do_sample": True, "top_p": 0.9})
        >>> trainer = Trainer(callbacks=[monitor], logger=False, enable_progress_bar=False)
    """

    _label = "GenerationMonitor"
    _activity = "sampling"
    _when = ("sample_on_train_start", "sample_on_train_end", "sample_on_validation")

    def __init__(
        self,
        prompts: list[str] | str,
        tokenizer: str | TextTokenizer | None = None,
        *,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        train_time_interval: timedelta | None = None,
        sample_on_train_start: bool = True,
        sample_on_train_end: bool = True,
        sample_on_validation: bool = False,
        generation: dict[str, Any] | GenerationConfig | None = None,
        logits_processors: list[LogitsProcessor] | LogitsProcessor | None = None,
        seed: int = 0,
        model_attr: str | None = None,
        adapter: str | type[ModelAdapter] | ModelAdapter | None = None,
        vocab_size: int | None = None,
        batch_size: int | None = None,
        context_length: int | None = None,
        tag: str = "samples",
        on_error: Literal["warn", "raise"] = "warn",
        also_greedy: bool = False,
        distributed: DistributedMode = "auto",
        empty_cache: bool = False,
        compile: bool = False,  # noqa: A002  (torch.compile's word)
        log_metrics: bool = True,
        prompts_from_data: int = 0,
        data_prompt_tokens: int = 32,
        data_reference_tokens: int = 32,
        console: ConsoleMode = "rounds",
    ) -> None:
        super().__init__()
        check_int("prompts_from_data", prompts_from_data, low=0)
        check_int("data_prompt_tokens", data_prompt_tokens)
        check_int("data_reference_tokens", data_reference_tokens)
        self.prompts = load_prompts(prompts) if prompts or not prompts_from_data else []
        self._configure(
            tokenizer=tokenizer, schedule=dict(every_n_train_steps=every_n_train_steps, every_n_epochs=every_n_epochs,
                                               train_time_interval=train_time_interval),
            switches=dict(sample_on_train_start=sample_on_train_start, sample_on_train_end=sample_on_train_end,
                          sample_on_validation=sample_on_validation, also_greedy=also_greedy, compile=compile,
                          log_metrics=log_metrics),
            model_attr=model_attr, adapter=adapter, context_length=context_length, batch_size=batch_size, tag=tag,
            on_error=on_error, distributed=distributed, empty_cache=empty_cache, console=console)
        self.generation = check_generation(generation)
        self.logits_processors = check_processors(logits_processors)
        check_seed(seed)
        check_int("vocab_size", vocab_size, allow_none=True)
        self.seed, self.vocab_size = seed, vocab_size
        self.prompts_from_data, self.data_prompt_tokens = prompts_from_data, data_prompt_tokens
        self.data_reference_tokens = data_reference_tokens
        self._use_cache = self.generation.get("use_cache") is not False
        self._plan: Plan | None = None
        self._encoded: EncodedPrompts | None = None
        self._sinks: list[SampleSink] = []

    # ----------------------------------------------------------------- setup: the plan, the prompts, the sinks
    @override
    def _prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._plan = settle_plan(self._target, self._tokenizer, self.generation, also_greedy=self.also_greedy)
        budget = self._plan.budget()
        self._encoded = encode_prompts(self.prompts, self._tokenizer, max_prompt_tokens=budget)
        if self.prompts_from_data:
            self._encoded = self._encoded + validation_prompts(
                trainer, pl_module, self._tokenizer, count=self.prompts_from_data,
                prompt_tokens=self.data_prompt_tokens, reference_tokens=self.data_reference_tokens, budget=budget)
        self._warn_cropped(budget)
        self._sinks, skipped = sinks_for(trainer.loggers, log_dir=self._records_dir)
        if len(skipped) == len(trainer.loggers):
            kept = (f"only to {os.path.join(self._records_dir, RECORDS_FILE)}" if self._records_dir is not None
                    else "nowhere but the console (no log directory)")
            rank_zero_warn(
                f"GenerationMonitor: no attached logger can show text (loggers: {skipped or 'none'}); samples go "
                f"{kept}. Attach a TensorBoard, W&B, MLflow or CSV logger to see them."
            )
        elif skipped:
            rank_zero_warn(f"GenerationMonitor: {skipped} cannot show text; they get only the scalars")

    def _warn_cropped(self, budget: int | None) -> None:
        if self._encoded.cropped:
            rank_zero_warn(f"GenerationMonitor: prompts {self._encoded.cropped} are longer than the {budget} tokens "
                           "that fit the context; they are cropped from the left")

    # ----------------------------------------------------------------- the probe
    @override
    def _probe(self, trainer: pl.Trainer, model: Any, vote: LockstepVote | None) -> ProbeResult:
        return probe(model, self._plan, self._encoded, self._tokenizer, pl_module=trainer.lightning_module,
                     vocab_size=self.vocab_size, score=self.log_metrics, batch_size=self._batch_size(trainer.strategy),
                     round_options=dict(logits_processors=self.logits_processors, all_finished=vote,
                                        compile=self.compile))

    @override
    def _apply(self, results: list[ProbeResult]) -> None:
        found = merge_results(results)
        target = self._plan.target
        if found.context is not None and target.context is None:
            target = target.with_context(found.context, "found by probing")
            budget = self._plan.budget(target)
            self._encoded = crop_prompts(self._encoded, budget)
            self._warn_cropped(budget)
        self._plan = replace(self._plan, target=target, vocab=found.vocab, vocab_source=found.vocab_source,
                             policy=found.policy, score=found.score, why_not_scored=found.why_not_scored,
                             watched=frozenset(found.written))
        self._say(describe(self._plan, scoring_asked=self.log_metrics))
        if self.log_metrics and not found.score:
            rank_zero_warn(f"GenerationMonitor: samples are not scored (mean log-prob, reference loss): "
                           f"{found.why_not_scored}; the other scalars are still logged")
        if found.written:
            rank_zero_warn(f"GenerationMonitor: sampling writes into the buffers {list(found.written)} of "
                           f"`{target.network.name}`; their values are put back after every round")

    # ----------------------------------------------------------------- one round
    def sample_now(self, trainer: pl.Trainer, step: int) -> list[Sample]:
        """Run one round now, on every process as the mode requires, and hand the samples to the loggers.

        Returns the samples on global rank 0 (an empty list elsewhere).

        Raises:
            RuntimeError: The monitor has not been set up by a ``Trainer.fit``.
        """
        return self.run_now(trainer, step)

    @override
    def _round(self, trainer: pl.Trainer, model: Any, vote: LockstepVote | None,
               shard: tuple[int, int]) -> list[tuple[int, Sample]]:
        watched = watched_state(model, only=set(self._plan.watched)) if self._plan.watched else nullcontext()
        with watched:
            return sample_round(model, self._encoded, self._tokenizer, self._plan, seed=self.seed,
                                batch_size=self._batch_size(trainer.strategy), logits_processors=self.logits_processors,
                                shard=shard, all_finished=vote, compile=self.compile)

    @override
    def _publish(self, trainer: pl.Trainer, step: int, items: list[Any], seconds: float) -> list[Sample]:
        samples = [sample for _, sample in sorted(items, key=lambda pair: pair[0])]
        for sink in self._sinks:
            sink.write(step, samples, tag=self.tag)
        self._say(round_line(step, samples, seconds, first_sample=self.console == "first_sample"), trainer)
        if self.log_metrics:
            scalars = summarize(samples, eos_ids=self._plan.settled.eos_ids, seconds=seconds)
            for logger in trainer.loggers:
                logger.log_metrics({f"{self.tag}/{name}": value for name, value in scalars.items()}, step=step)
        return samples

    @override
    def _batch_size(self, strategy: Any) -> int | None:
        if self.batch_size is None and self._mode in ("shard", "gather"):
            # One batch per process; set `batch_size` to get samples identical to a single-process run.
            return -(-len(self._encoded.ids) // strategy.world_size)
        return self.batch_size
