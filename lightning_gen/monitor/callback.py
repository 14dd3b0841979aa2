"""`GenerationMonitor`: sample fixed prompts during training and log what the model writes."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from transformers import GenerationConfig, LogitsProcessor
from typing_extensions import override

from lightning_gen.decoding.adapters import ModelAdapter
from lightning_gen.decoding.config import eos_id_set
from lightning_gen.monitor._arguments import check_arguments
from lightning_gen.monitor._gather import can_gather, fits_gathered
from lightning_gen.monitor._guards import round_guards
from lightning_gen.monitor.console import ConsoleMode, end_lines, round_line, say
from lightning_gen.monitor.discovery import find_network, find_tokenizer, settle
from lightning_gen.monitor.distributed import DistributedMode, LockstepVote, choose_mode, run_everywhere
from lightning_gen.monitor.probe import ProbeError, ProbeResult, is_transient, probe
from lightning_gen.monitor.prompts import encode_prompts, prompt_budget, validation_prompts
from lightning_gen.monitor.round import sample_round
from lightning_gen.monitor.sinks import SampleSink, run_log_dir, sinks_for
from lightning_gen.text.quality import summarize
from lightning_gen.text.records import RECORDS_FILE
from lightning_gen.text.samples import EncodedPrompts, Sample
from lightning_gen.text.tokenization import LoadedTokenizer, TextTokenizer

__all__ = ["GenerationMonitor"]

class GenerationMonitor(pl.Callback):
    """Complete the same prompts at scheduled steps and log the samples, without disturbing training.

    Each round runs `lightning_gen.generate` (Hugging Face's decoding) in eval mode under `torch.no_grad`, with
    a generator seeded with ``seed`` on the model's device: the same noise every round, so samples are
    comparable across steps; the round runs inside a fork of every global random stream (torch's, Python's,
    NumPy's), so training is bit-identical with or without the monitor, even for a model that draws from them
    at inference. Everything checkable is checked before the first training step: in ``__init__`` (bad
    configuration), in ``setup`` (tokenizer, model, prompts' ids) and by the probe at the start of fit (one
    short round: the model's output, the vocabulary its logits cover, whether samples can be scored; see
    `lightning_gen.monitor.probe`).

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
            `lightning_gen.monitor.discovery`).
        adapter: How to call the network: None detects its protocol; a name (``"plain"``, ``"litgpt"``,
            ``"gpt-fast"``, ``"torchtune"``, ``"hf"``), a `ModelAdapter` subclass or its import path (from YAML),
            or a `ModelAdapter` instance.
        vocab_size: Sample only ids below this; None takes the smaller of the model's vocabulary and the
            tokenizer's, so a padded vocabulary (50304 logits for 50257 tokens) never yields ids that cannot be
            decoded.
        batch_size: Most prompts per forward; None puts them all in one batch (per length group).
        context_length: Context length of the model; discovered from the model when None.
        tag: Prefix of the logged tags.
        on_error: What a failure while sampling does: ``"warn"`` warns and training goes on, ``"raise"`` re-raises.
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
        console: What global rank 0 prints through Lightning's logging: ``"rounds"`` a line per round
            (``step 50: 6 samples, 3.2 s, 310 tok/s``) and, when training ends, where the samples are and the
            commands that open them; ``"first_sample"`` also each round's first sample; ``"off"`` nothing.

    Raises:
        ValueError: A bad value for any argument, naming it.
        FileNotFoundError: ``prompts`` or ``tokenizer`` names a file that does not exist.
        NotImplementedError: ``generation`` asks for beam search or another search mode.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> monitor = GenerationMonitor(["Once upon a time"], every_n_train_steps=100,
        ...                             generation={"max_new_tokens": 32, "do_sample": True, "top_p": 0.9})
        >>> trainer = Trainer(callbacks=[monitor], logger=False, enable_progress_bar=False)
    """

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
        self.prompts = prompts
        self._tokenizer_arg = tokenizer
        self.every_n_train_steps = every_n_train_steps
        self.every_n_epochs = every_n_epochs
        self.train_time_interval = train_time_interval
        self.sample_on_train_start = sample_on_train_start
        self.sample_on_train_end = sample_on_train_end
        self.sample_on_validation = sample_on_validation
        self.generation = generation
        self.logits_processors = logits_processors
        self.seed = seed
        self.model_attr = model_attr
        self.adapter = adapter
        self.vocab_size = vocab_size
        self.batch_size = batch_size
        self.context_length = context_length
        self.tag = tag
        self.on_error = on_error
        self.also_greedy = also_greedy
        self.distributed = distributed
        self.empty_cache = empty_cache
        self.compile = compile
        self.log_metrics = log_metrics
        self.prompts_from_data = prompts_from_data
        self.data_prompt_tokens = data_prompt_tokens
        self.data_reference_tokens = data_reference_tokens
        self.console = console
        check_arguments(self)
        self._score = log_metrics
        # Resume state: the last step sampled, and the time since the last round (`train_time_interval`).
        self.last_sampled_step: int | None = None
        self._last_time = time.monotonic()
        self._elapsed_at_load = 0.0
        # Resolved in `setup`.
        self._model: nn.Module | None = None
        self._adapter: ModelAdapter | None = None
        self._tokenizer: LoadedTokenizer | None = None
        self._encoded: EncodedPrompts | None = None
        self._config: GenerationConfig | None = None
        self._sinks: list[SampleSink] = []
        self._records_dir: str | None = None
        self._rounds = 0
        self._mode = "single"
        self._advertised_vocab: int | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag)

    # ----------------------------------------------------------------- setup: every check before training
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        network = find_network(pl_module, self.model_attr)  # `pl_module` itself, or its one language-model child
        self._model, self._network_name = network.called, network.name
        # Settled at `on_fit_start`, once the strategy has sharded the model; a mode that cannot work fails now.
        self._mode = choose_mode(trainer.strategy, self.distributed, can_gather=True)
        self._tokenizer = find_tokenizer(self._tokenizer_arg, trainer, pl_module)
        fields = dict(self.generation)
        if fields.get("eos_token_id") is None and self._tokenizer.eos_token_id is not None:
            fields["eos_token_id"] = self._tokenizer.eos_token_id
        if fields.get("pad_token_id") is None and self._tokenizer.pad_token_id is not None:
            fields["pad_token_id"] = self._tokenizer.pad_token_id
        self._config = GenerationConfig(**fields)
        if self._config.stop_strings and self._tokenizer.hf_tokenizer is None:
            raise ValueError("`generation.stop_strings` needs a Hugging Face tokenizer; this tokenizer is not one")

        # Which protocol drives the network, its context, and the ids both its logits and the tokenizer cover.
        sampling = settle(pl_module, network, adapter=self.adapter, use_cache=self._config.use_cache is not False,
                          context_length=self.context_length, vocab_size=self.vocab_size,
                          tokenizer_vocab=self._tokenizer.vocab_size, compile=self.compile)
        rank_zero_info(sampling.line)
        self._adapter, self._advertised_vocab = sampling.adapter, sampling.vocab
        budget = prompt_budget(sampling.context, self._config, needs_room=sampling.adapter.needs_room_for_new_tokens)
        self._encoded = encode_prompts(self.prompts, self._tokenizer, vocab_size=sampling.vocab,
                                       max_prompt_tokens=budget)
        if self.prompts_from_data:
            self._encoded = self._encoded + validation_prompts(
                trainer, pl_module, self._tokenizer, count=self.prompts_from_data, prompt_tokens=self.data_prompt_tokens,
                reference_tokens=self.data_reference_tokens, budget=budget)
        if self._encoded.cropped:
            rank_zero_warn(
                f"GenerationMonitor: prompts {self._encoded.cropped} are longer than the {budget} tokens that fit the "
                "context; they are cropped from the left"
            )
        self._records_dir = run_log_dir(trainer)  # on every rank: the path is broadcast from rank 0
        self._sinks, skipped = sinks_for(trainer.loggers, log_dir=self._records_dir)
        self._rounds = 0
        if len(skipped) == len(trainer.loggers):
            kept = (f"only to {os.path.join(self._records_dir, RECORDS_FILE)}" if self._records_dir is not None
                    else "nowhere but the console (no log directory)")
            rank_zero_warn(
                f"GenerationMonitor: no attached logger can show text (loggers: {skipped or 'none'}); samples go "
                f"{kept}. Attach a TensorBoard, W&B, MLflow or CSV logger to see them."
            )
        elif skipped:
            rank_zero_warn(f"GenerationMonitor: {skipped} cannot show text; they get only the scalars")

    # ----------------------------------------------------------------- start of fit: the mode, then the probe
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._encoded is None:
            return
        strategy = trainer.strategy
        gather = False
        if strategy.world_size > 1 and self.distributed in ("auto", "gather"):
            # Every process judges its own memory; the round gathers only if all can (a collective decision).
            mine = can_gather(strategy, strategy.model) and fits_gathered(strategy.model, strategy.root_device)
            gather = bool(strategy.reduce_boolean_decision(mine, all=True))
        self._mode = choose_mode(strategy, self.distributed, can_gather=gather)
        self._run_probe(trainer)

    def _run_probe(self, trainer: pl.Trainer) -> None:
        """One short round of the shortest prompt on every process (see `probe`); settles scoring for all."""
        strategy = trainer.strategy

        def one_probe(vote: LockstepVote | None) -> list[ProbeResult]:
            with round_guards(trainer, self._model, mode=self._mode, empty_cache=self.empty_cache) as model:
                return [probe(model, self._encoded, self._tokenizer, self._config, vocab_size=self._advertised_vocab,
                              score=self._score, context_length=self.context_length,
                              round_options=dict(logits_processors=self.logits_processors,
                                                 adapter=self._adapter if model is self._model else None,
                                                 context_length=self.context_length, all_finished=vote))]

        mode = "shard" if self._mode == "rank_zero" else self._mode  # every process probes its own forward
        try:
            results = run_everywhere(strategy, mode, one_probe, is_global_zero=trainer.is_global_zero)
        except Exception as err:
            if is_transient(err) and self.on_error == "warn":
                rank_zero_warn(f"GenerationMonitor: the probe round failed with {type(err).__name__}: {err}; it may "
                               "not happen again, so training starts, without scoring the samples")
                self._score = False
                return
            if is_transient(err):
                raise
            hint = (f"GenerationMonitor was sampling `{self._network_name}`; if that is not the network that maps ids "
                    "to logits, set `model_attr`")
            if isinstance(err, ProbeError):
                raise ProbeError(f"{err} ({hint})") from err
            raise ProbeError(f"GenerationMonitor's probe at the start of fit failed with {type(err).__name__}: "
                             f"{err} ({hint})") from err
        decision = (all(r.scores for r in results), next((r.why_not_scored for r in results if r.why_not_scored), None))
        if strategy.world_size > 1:
            decision = strategy.broadcast(decision if trainer.is_global_zero else None)
        if self._score and not decision[0]:
            rank_zero_warn(f"GenerationMonitor: samples are not scored (mean log-prob, reference loss): {decision[1]}; "
                           "the other scalars are still logged")
        self._score = decision[0]

    # ----------------------------------------------------------------- schedule
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run goes on with the interval where the checkpoint left it.
        self._last_time = time.monotonic() - self._elapsed_at_load
        self._elapsed_at_load = 0.0
        if self.sample_on_train_start and trainer.global_step == 0:  # the baseline is step 0's, not a resume's
            self._maybe_sample(trainer, pl_module)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        due = False
        if self.every_n_train_steps is not None:
            due = step > 0 and step % self.every_n_train_steps == 0
        elif self.train_time_interval is not None:
            elapsed = time.monotonic() - self._last_time
            # Clocks differ across processes: rank 0 decides for everyone.
            due = bool(trainer.strategy.broadcast(elapsed >= self.train_time_interval.total_seconds()))
        if due:
            self._maybe_sample(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._maybe_sample(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.sample_on_validation and trainer.state.fn == "fit":  # `_maybe_sample` skips the sanity check
            self._maybe_sample(trainer, pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.sample_on_train_end:
            self._maybe_sample(trainer, pl_module)
        if self.console != "off" and self._rounds:
            say("\n".join(end_lines(self._rounds, self._records_dir, trainer.loggers, tag=self.tag)), trainer)

    # ----------------------------------------------------------------- one round
    def _maybe_sample(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or self.last_sampled_step == step or self._encoded is None:
            return
        self.last_sampled_step = step
        self._last_time = time.monotonic()
        try:
            self.sample_now(trainer, step)
        except Exception as err:  # noqa: BLE001 - a failed round must not end the run (KeyboardInterrupt still does)
            if self.on_error == "raise":
                raise
            rank_zero_warn(f"GenerationMonitor: sampling at step {step} failed with {type(err).__name__}: {err}; "
                           "training continues")

    def sample_now(self, trainer: pl.Trainer, step: int) -> list[Sample]:
        """Run one round now, on every process as the mode requires, and hand the samples to the loggers.

        Returns the samples on global rank 0 (an empty list elsewhere).
        """
        assert self._model is not None and self._tokenizer is not None and self._encoded is not None
        start = time.perf_counter()
        pairs = run_everywhere(trainer.strategy, self._mode, lambda vote: self._run_round(trainer, vote),
                               is_global_zero=trainer.is_global_zero)
        if not trainer.is_global_zero:
            return []
        samples = [sample for _, sample in sorted(pairs, key=lambda pair: pair[0])]
        seconds = time.perf_counter() - start
        self._rounds += 1
        for sink in self._sinks:
            sink.write(step, samples, tag=self.tag)
        if self.console != "off":
            say(round_line(step, samples, seconds, first_sample=self.console == "first_sample"), trainer)
        if self.log_metrics:
            eos_ids = eos_id_set(self._config.eos_token_id)
            scalars = summarize(samples, eos_ids=eos_ids, seconds=seconds)
            for logger in trainer.loggers:
                logger.log_metrics({f"{self.tag}/{name}": value for name, value in scalars.items()}, step=step)
        return samples

    def _run_round(self, trainer: pl.Trainer, vote: LockstepVote | None) -> list[tuple[int, Sample]]:
        strategy = trainer.strategy
        shard = (strategy.global_rank, strategy.world_size) if self._mode in ("shard", "gather") else (0, 1)
        with round_guards(trainer, self._model, mode=self._mode, empty_cache=self.empty_cache) as model:
            return sample_round(
                model, self._encoded, self._tokenizer, self._config,
                seed=self.seed, batch_size=self._batch_size(strategy), logits_processors=self.logits_processors,
                context_length=self.context_length, also_greedy=self.also_greedy, shard=shard,
                all_finished=vote, score=self._score, compile=self.compile,
                adapter=self._adapter if model is self._model else None,
            )

    def _batch_size(self, strategy: Any) -> int | None:
        if self.batch_size is None and self._mode in ("shard", "gather"):
            # One batch per process; set `batch_size` to get samples identical to a single-process run.
            return -(-len(self._encoded.ids) // strategy.world_size)
        return self.batch_size

    # ----------------------------------------------------------------- resume
    @override
    def state_dict(self) -> dict[str, Any]:
        # The time since the last round too, so that `train_time_interval` goes on where it stopped.
        return {"last_sampled_step": self.last_sampled_step, "elapsed_since_round": time.monotonic() - self._last_time}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_sampled_step = state_dict.get("last_sampled_step")
        self._elapsed_at_load = float(state_dict.get("elapsed_since_round", 0.0))
