"""What every monitor of a training run shares: the schedule, the network and its plan, the probe at the start of
fit, rounds on every process the distributed mode needs, the guards around them, and resume.

`ScheduledMonitor` is a Lightning callback that runs *rounds* at scheduled steps; a subclass says what a round
does (`GenerationMonitor` samples prompts; `TaskMonitor` scores tasks) through four methods:

- ``_prepare(trainer, pl_module)``: at ``setup``, after the network, its target and the tokenizer are found;
- ``_probe(trainer, model)``: one short check on every process at the start of fit (its result is plain data);
  ``_apply(results)`` then takes every process's result, on every process (the same decision everywhere);
- ``_round(trainer, model, vote, shard)``: one round's items on this process;
- ``_publish(trainer, step, items, seconds)``: on global rank 0, the round's items from every process.

And ``_batch_size(strategy)`` where the rounds batch their work.

Every decision that leads into a collective is taken collectively: the distributed mode (who can gather), the
schedule under ``train_time_interval`` (rank 0's clock), and the probe's results (gathered, then applied alike).
A round that fails warns and training goes on (``on_error="warn"``), on every process together.
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_gen._checks import check_int
from lightning_gen.monitor._arguments import check_common
from lightning_gen.monitor._gather import can_gather, fits_gathered
from lightning_gen.monitor._guards import round_guards
from lightning_gen.monitor.console import end_lines, say
from lightning_gen.monitor.network import find_network, find_tokenizer
from lightning_gen.monitor.distributed import LockstepVote, choose_mode, run_everywhere
from lightning_gen.monitor.plan import Target, settle_target
from lightning_gen.monitor.sinks import run_log_dir
from lightning_gen.monitor.forward_checks import is_transient
from lightning_gen.text.tokenization import LoadedTokenizer

__all__ = ["ScheduledMonitor"]


class ScheduledMonitor(pl.Callback):
    """The machinery of a monitor; see the module docstring. A subclass's constructor checks and stores the
    arguments every monitor takes with `_configure` (``tokenizer``, the schedule, its switches, ``model_attr``,
    ``adapter``, ``context_length``, ``batch_size``, ``tag``, ``on_error``, ``distributed``, ``empty_cache``,
    ``console``), then its own.
    """

    #: The names of the subclass's switches for a round at the start, at the end, and at each validation.
    _when: tuple[str, str, str]
    _use_cache = True
    #: Compile the decode step (`GenerationMonitor`'s switch ``compile`` sets it; a scoring round decodes nothing).
    compile = False
    #: How messages name the monitor and what its rounds do ("GenerationMonitor: sampling at step 4 failed ...").
    _label = "ScheduledMonitor"
    _activity = "the round"
    #: Its rounds are evaluations (`TaskMonitor`'s): the end lines name its records and views (`end_lines`).
    _evaluates = False

    def _configure(
        self, *, tokenizer: Any, schedule: dict[str, Any], switches: dict[str, bool], model_attr: Any, adapter: Any,
        context_length: Any, batch_size: Any, tag: Any, on_error: Any, distributed: Any, empty_cache: Any,
        console: Any,
    ) -> None:
        """Check the arguments every monitor takes (`check_common`) and store them; ``switches`` are the subclass's
        named booleans (its `_when` among them), each stored under its own name."""
        self.tokenizer = check_common(tokenizer=tokenizer, schedule=schedule, switches={**switches,
                                      "empty_cache": empty_cache}, model_attr=model_attr, adapter=adapter,
                                      context_length=context_length, tag=tag, on_error=on_error,
                                      distributed=distributed, console=console)
        check_int("batch_size", batch_size, allow_none=True)
        for name, value in {**schedule, **switches}.items():
            setattr(self, name, value)
        self.model_attr, self.adapter, self.context_length = model_attr, adapter, context_length
        self.batch_size = batch_size
        self.tag, self.on_error, self.distributed = tag, on_error, distributed
        self.empty_cache, self.console = empty_cache, console
        self._init_state()

    @property
    def _on_start(self) -> bool:
        return getattr(self, self._when[0])

    @property
    def _on_end(self) -> bool:
        return getattr(self, self._when[1])

    @property
    def _on_validation(self) -> bool:
        return getattr(self, self._when[2])

    def _init_state(self) -> None:
        # Resume state: the last step a round ran at, and the time since the last round (`train_time_interval`).
        self.last_round_step: int | None = None
        self._last_time = time.monotonic()
        self._elapsed_at_load = 0.0
        # Settled in `setup` and by the probe.
        self._target: Target | None = None
        self._tokenizer: LoadedTokenizer | None = None
        self._mode = "single"
        self._probed = False
        self._rounds = 0
        self._records_dir: str | None = None  # where the run's records go (`run_log_dir`); None writes none

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(tag=self.tag)

    # ----------------------------------------------------------------- what a subclass says
    def _prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """At ``setup``, once `_target` and `_tokenizer` are known; raise to stop before training starts."""

    def _probe(self, trainer: pl.Trainer, model: Any, vote: LockstepVote | None) -> Any:
        """One short check of ``model`` (the module a round calls) on this process; a picklable result."""
        return None

    def _apply(self, results: list[Any]) -> None:
        """Take every process's probe result (the same list on every process)."""

    def _round(self, trainer: pl.Trainer, model: Any, vote: LockstepVote | None,
               shard: tuple[int, int]) -> list[Any]:
        raise NotImplementedError

    def _publish(self, trainer: pl.Trainer, step: int, items: list[Any], seconds: float) -> list[Any]:
        """Hand the round's items (every process's, on global rank 0) to the loggers; returns what was published."""
        raise NotImplementedError

    def _batch_size(self, strategy: Any) -> int | None:
        return None

    # ----------------------------------------------------------------- setup: every check before training
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        network = find_network(pl_module, self.model_attr)  # `pl_module` itself, or its one language-model child
        # Settled at `on_fit_start`, once the strategy has sharded the model; a mode that cannot work fails now.
        self._mode = choose_mode(trainer.strategy, self.distributed, can_gather=True)
        self._tokenizer = find_tokenizer(self.tokenizer, trainer, pl_module)
        self._target = settle_target(pl_module, network, adapter=self.adapter, use_cache=self._use_cache,
                                     context_length=self.context_length, compile=self.compile)
        self._probed = False
        self._rounds = 0
        self._records_dir = run_log_dir(trainer)  # on every rank: the path is broadcast from rank 0
        self._prepare(trainer, pl_module)

    # ----------------------------------------------------------------- start of fit: the mode, then the probe
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._target is None:
            return
        strategy = trainer.strategy
        gather = False
        if strategy.world_size > 1 and self.distributed in ("auto", "gather"):
            # Every process judges its own memory; the round gathers only if all can (a collective decision).
            mine = can_gather(strategy, strategy.model) and fits_gathered(strategy.model, strategy.root_device)
            gather = bool(strategy.reduce_boolean_decision(mine, all=True))
        self._mode = choose_mode(strategy, self.distributed, can_gather=gather)
        try:
            self._run_probe(trainer)
        except Exception as err:
            # Every process gets here together (`run_everywhere` raises a failure everywhere), each with its own
            # error: train only if every one of them may not come back, or one process trains while another stops.
            transient = is_transient(err)
            if strategy.world_size > 1:
                transient = bool(strategy.reduce_boolean_decision(transient, all=True))
            if not transient or self.on_error == "raise":
                raise
            rank_zero_warn(f"{self._label}: the probe round failed with {type(err).__name__}: {err}; it may not "
                           "happen again, so training starts, and the probe runs again before the first round")

    def _run_probe(self, trainer: pl.Trainer) -> None:
        """The probe on every process (each probes its own forward); its results applied alike everywhere."""
        strategy = trainer.strategy

        def one(vote: LockstepVote | None) -> list[Any]:
            with round_guards(trainer, self._target.network.called, mode=self._mode,
                              empty_cache=self.empty_cache) as model:
                return [self._probe(trainer, model, vote)]

        mode = "shard" if self._mode == "rank_zero" else self._mode
        results = run_everywhere(strategy, mode, one, is_global_zero=trainer.is_global_zero)
        if strategy.world_size > 1:
            results = strategy.broadcast(results if trainer.is_global_zero else None)
        self._apply(results)
        self._probed = True

    # ----------------------------------------------------------------- schedule
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run goes on with the interval where the checkpoint left it.
        self._last_time = time.monotonic() - self._elapsed_at_load
        self._elapsed_at_load = 0.0
        if self._on_start and trainer.global_step == 0:  # the baseline is step 0's, not a resume's
            self._maybe_run(trainer)

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
            self._maybe_run(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._maybe_run(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_validation and trainer.state.fn == "fit":  # `_maybe_run` skips the sanity check
            self._maybe_run(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._on_end:
            self._maybe_run(trainer)
        if self._rounds:
            lines = end_lines(self._rounds, self._records_dir, trainer.loggers, tag=self.tag,
                              evaluations=self._evaluates)
            self._say("\n".join(lines), trainer)

    # ----------------------------------------------------------------- one round
    def _maybe_run(self, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        if trainer.sanity_checking or self.last_round_step == step or self._target is None:
            return
        self.last_round_step = step
        self._last_time = time.monotonic()
        try:
            self.run_now(trainer, step)
        except Exception as err:  # noqa: BLE001 - a failed round must not end the run (KeyboardInterrupt still does)
            if self.on_error == "raise":
                raise
            rank_zero_warn(f"{self._label}: {self._activity} at step {step} failed with {type(err).__name__}: {err}; "
                           "training continues")

    def run_now(self, trainer: pl.Trainer, step: int) -> list[Any]:
        """Run one round now, on every process as the mode requires, and publish its items on global rank 0.

        Returns the round's items on global rank 0 (an empty list elsewhere).

        Raises:
            RuntimeError: The monitor has not been set up by a ``Trainer.fit`` (no network, no tokenizer).
        """
        if self._target is None:
            raise RuntimeError(f"{self._label} has not been set up: pass it to a Trainer and call `fit` first")
        if not self._probed:  # the probe at the start of fit ran out of memory: it runs again first
            self._run_probe(trainer)
        strategy = trainer.strategy
        start = time.perf_counter()
        shard = (strategy.global_rank, strategy.world_size) if self._mode in ("shard", "gather") else (0, 1)

        def one(vote: LockstepVote | None) -> list[Any]:
            with round_guards(trainer, self._target.network.called, mode=self._mode,
                              empty_cache=self.empty_cache) as model:
                return self._round(trainer, model, vote, shard)

        items = run_everywhere(strategy, self._mode, one, is_global_zero=trainer.is_global_zero)
        if not trainer.is_global_zero:
            return []
        self._rounds += 1
        return self._publish(trainer, step, items, time.perf_counter() - start)

    def _say(self, message: str, trainer: pl.Trainer | None = None) -> None:
        """A line on the console from global rank 0, above ``trainer``'s progress bar where one shows (see `say`)."""
        if self.console != "off":
            say(message, trainer)

    # ----------------------------------------------------------------- resume
    @override
    def state_dict(self) -> dict[str, Any]:
        # The time since the last round too, so that `train_time_interval` goes on where it stopped.
        return {"last_sampled_step": self.last_round_step,
                "elapsed_since_round": time.monotonic() - self._last_time}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_round_step = state_dict.get("last_sampled_step")
        self._elapsed_at_load = float(state_dict.get("elapsed_since_round", 0.0))
