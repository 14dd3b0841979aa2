"""Every multi-process check of GenerationMonitor in one launch of 2 CPU processes (gloo).

Usage: python monitor_runs.py OUT_DIR SCENARIO [SCENARIO ...]

Lightning's "ddp" and ModelParallel strategies re-launch this script for the second process; later fits in the
same script reuse the process group, so the launch (most of the cost) is paid once for all scenarios. Each
scenario writes ``OUT_DIR/<scenario>/rank<r>.json`` (what the rank saw) beside its TensorBoard logs. A watchdog
ends the process if a scenario hangs, leaving ``OUT_DIR/<scenario>/hung<r>`` behind, so a deadlock is a failed
test with a name, never a stuck suite.
"""

import importlib.util
import json
import os
import sys
import threading
import warnings
from datetime import timedelta

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # tests/
from tiny import VOCAB, CharTokenizer, TinyLM, trainer  # noqa: E402

from lightning_gen import GenerationMonitor, TaskMonitor  # noqa: E402
from lightning_gen.monitor._gather import extra_bytes  # noqa: E402
from lightning_gen.monitor.distributed import count_collectives  # noqa: E402

EOS = VOCAB.index("\n")
PROMPTS = ["ab", "hello", "x", "the end", "zz", "q"]
TIMEOUT = timedelta(seconds=60)  # a collective that waits longer than this fails instead of hanging for 30 min
SCENARIO_SECONDS = 90


class ShapeError(Exception):
    """A user exception whose constructor takes two arguments: pickling it to another process breaks."""

    def __init__(self, expected, got):
        super().__init__(f"expected {expected}, got {got}")
        self.expected, self.got = expected, got


class ScenarioLM(TinyLM):
    """TinyLM with what the scenarios need while sampling (never while training).

    bias: ``"prompt"``: rows whose prompt starts with a-m end after 2 tokens, the others never end (so ranks with
    different shares finish at different times, and a single process sees the same); ``"rank"``: rank 0's rows
    end after 2 tokens, the other ranks' never end (lockstep). fail: raise ``ShapeError`` (``"shape"``) or an
    out-of-memory error (``"oom"``) at the end of the ``fail_call``-th sampling forward of the round at
    ``fail_step``, on ``fail_rank`` only, or per rank as a mapping ``{rank: kind}`` (after the forward's own
    collectives, as an OOM in the logits' processing would). last_only: return the last position's logits only
    (nanoGPT at inference). shard: FSDP2 `fully_shard` in `configure_model` (the FSDP1 scenarios wrap it with the
    strategy's `auto_wrap_policy` instead).
    """

    def __init__(self, *, bias=None, fail=None, fail_rank=1, fail_step=2, fail_call=3, last_only=False, shard=False):
        super().__init__()
        self.tokenizer = CharTokenizer(eos=True)
        self.bias, self.fail, self.fail_rank, self.fail_step, self.fail_call = bias, fail, fail_rank, fail_step, fail_call
        self.last_only, self.shard = last_only, shard
        # Kept in containers, filled in place: a round puts every rebound attribute of the model back.
        self.counts = {"sampling": 0, "calls": 0}
        self.sampled_shapes = set()

    @property
    def sampling_forwards(self):
        return self.counts["sampling"]

    def configure_model(self):
        if self.shard:
            from torch.distributed.fsdp import fully_shard

            fully_shard(self.mlp)
            fully_shard(self)

    def forward(self, ids):
        logits = super().forward(ids)
        if self.training:
            return logits
        self.counts["sampling"] += 1
        self.sampled_shapes.add(tuple(self.mlp[0].weight.shape))  # sharded or whole, as the forward saw it
        rank, step = self.trainer.global_rank, self.trainer.global_step
        if self.bias is not None:
            if self.bias == "prompt":
                ends = (ids[:, 0] < 13) & (ids.shape[1] >= 4)  # (B,)
            else:
                ends = torch.full((ids.shape[0],), rank == 0 and ids.shape[1] >= 4)
            eos = torch.where(ends, 1e4, -1e4)[:, None]  # (B, 1)
            logits = torch.cat([logits[..., :EOS], logits[..., EOS:EOS + 1] + eos[:, None], logits[..., EOS + 1:]], -1)
        fail = self.fail.get(rank) if isinstance(self.fail, dict) else self.fail if rank == self.fail_rank else None
        if fail is not None and step == self.fail_step:
            self.counts["calls"] += 1
            if self.counts["calls"] == self.fail_call:
                if fail == "shape":
                    raise ShapeError((2, 37), tuple(logits.shape))
                raise torch.OutOfMemoryError("injected: out of memory while decoding")
        return logits[:, -1:] if self.last_only else logits


class CountingMonitor(GenerationMonitor):
    """GenerationMonitor that records, per round, the collectives this process called, its sampling forwards and
    the shape of the MLP's first weight after the round; the bytes the gather would add, at the start of fit; and
    the training loss of every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rounds = {}
        self.gathered_bytes = None
        self.losses = []

    def on_fit_start(self, trainer, pl_module):
        self.gathered_bytes = extra_bytes(trainer.strategy.model)  # what `fits_gathered` weighs, as it sees it
        super().on_fit_start(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))  # the training the rounds must leave as it was
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def run_now(self, trainer, step):
        model = trainer.lightning_module
        before = model.sampling_forwards
        with count_collectives() as counts:
            try:
                return super().run_now(trainer, step)
            finally:
                self.rounds[step] = {"collectives": dict(counts), "forwards": model.sampling_forwards - before,
                                     "shape_after": list(model.mlp[0].weight.shape),
                                     "module_stack": deepspeed_module_stack()}


def ddp():
    return DDPStrategy(timeout=TIMEOUT)


def fsdp2():
    return ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, timeout=TIMEOUT)


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy (FSDP1) on CPU processes, for these tests only: FSDP1 itself runs on the CPU with
    gloo when it is given the CPU as its device, but Lightning hands it the device's index (None for the CPU), and
    FSDP1 then looks for an accelerator and fails. The units are built here as Lightning builds them, with the
    CPU named; Lightning's `_setup_model` then finds the model wrapped and leaves it so. (Lightning's own check
    that refuses FSDP on the CPU applies to `FSDPStrategy` itself, not to a subclass.)"""

    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel

        policy = self.kwargs.pop("auto_wrap_policy")
        model = FullyShardedDataParallel(model, device_id=torch.device("cpu"), auto_wrap_policy=policy,
                                         sharding_strategy=self.sharding_strategy, cpu_offload=self.cpu_offload,
                                         mixed_precision=self.mixed_precision_config, **self.kwargs)
        return super()._setup_model(model)


def fsdp1(use_orig_params=True):
    # The MLP its own unit inside the root's: a gathered round must hold both, a lockstep one gathers the MLP at
    # every forward.
    return CPUFSDPStrategy(auto_wrap_policy={torch.nn.Sequential}, use_orig_params=use_orig_params, timeout=TIMEOUT)


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeedStrategy on CPU processes, for these tests only: DeepSpeed itself runs ZeRO-3 on the
    CPU (its CPU accelerator, gloo), but Lightning refuses any accelerator other than CUDA in
    `setup_environment`; this skips that one check. The devices are given as ``cpu:0``, ``cpu:1`` (torch treats
    both as the CPU) because Lightning and DeepSpeed want each process's device index to be its local rank.

    DeepSpeed's start (`init_distributed`) also builds, on Linux, its shared-memory all-reduce for the CPU
    (`deepspeed_shm_comm`): a C++ op compiled at its first use on a machine, 208 s on 2 cores, longer than a
    scenario's watchdog. Only DeepSpeed-Inference's tensor-parallel layers call it (`inference_all_reduce`), never
    ZeRO, so it is marked not compatible, as DeepSpeed marks it off Linux: nothing is compiled, and every collective
    is gloo's, as ZeRO-3's are with it too."""

    def setup_environment(self):
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # the dict DeepSpeed's start looks it up in
        super(DeepSpeedStrategy, self).setup_environment()  # DDPStrategy's: everything but the CUDA check


def deepspeed3():
    # Every parameter partitioned (the tiny model's are all below DeepSpeed's default persistence threshold).
    return CPUDeepSpeedStrategy(config={"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}},
                                process_group_backend="gloo", timeout=TIMEOUT,
                                parallel_devices=[torch.device("cpu", i) for i in range(2)])


def deepspeed_ops():
    """The C++ ops DeepSpeed has loaded in this process, built or found built (none is wanted: where none is built
    yet, as on a fresh machine, each one is minutes of compiling)."""
    if "deepspeed" not in sys.modules:
        return []
    from deepspeed.ops.op_builder.builder import OpBuilder

    return sorted(OpBuilder._loaded_ops)


def deepspeed_module_stack():
    """How deep ZeRO-3's module stack (a DeepSpeed global, which its hook setup pushes the root onto) is now."""
    if "deepspeed" not in sys.modules:
        return None
    from deepspeed.runtime.zero import parameter_offload

    return len(parameter_offload.FWD_MODULE_STACK)


def fit(out_dir, strategy, model, prompts=PROMPTS, devices=2, **monitor_kwargs):
    """Train 4 steps with a monitor sampling every 2, and return what this rank saw (also used by the tests in a
    single process, as the reference)."""
    options = dict(every_n_train_steps=2, generation={"max_new_tokens": 5, "do_sample": True}, batch_size=2,
                   sample_on_train_end=False, console="off")
    options.update(monitor_kwargs)
    monitor = CountingMonitor(prompts, **options)
    t = trainer(out_dir, [monitor], max_steps=4, strategy=strategy, devices=devices)
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t.fit(model)
        except Exception as err:  # noqa: BLE001 - recorded: some scenarios expect an error at setup
            error = f"{type(err).__name__}: {err}"
    return {
        "rank": t.global_rank,
        "global_step": t.global_step,
        "mode": monitor._mode,
        "scored": monitor._plan.score if monitor._plan is not None else None,
        "error": error,
        "rounds": {str(step): r for step, r in monitor.rounds.items()},
        "sampled_shapes": sorted(map(list, model.sampled_shapes)),
        "gathered_bytes": monitor.gathered_bytes,
        "losses": monitor.losses,
        "deepspeed_ops": deepspeed_ops(),
        "warnings": [str(w.message) for w in caught if "GenerationMonitor" in str(w.message)],
    }


TASKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tasks", "tasks.yaml")


class CountingTaskMonitor(TaskMonitor):
    """TaskMonitor that records, per round, the items this process scored and the records it published."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rounds = {}

    def run_now(self, trainer, step):
        records = super().run_now(trainer, step)
        self.rounds[step] = {"records": records, **self.rounds.get(step, {})}
        return records

    def _round(self, trainer, model, vote, shard):
        items = super()._round(trainer, model, vote, shard)
        self.rounds[trainer.global_step] = {"scored": {task: sorted(map(int, scores))
                                                       for task, scores in items[0].items()}}
        return items


def fit_tasks(out_dir, strategy, model, devices=2, **monitor_kwargs):
    """Train 4 steps with a TaskMonitor evaluating every 2, and return what this rank saw."""
    monitor = CountingTaskMonitor(TASKS, every_n_train_steps=2, console="off", **monitor_kwargs)
    t = trainer(out_dir, [monitor], max_steps=4, strategy=strategy, devices=devices)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.fit(model)
    return {"rank": t.global_rank, "global_step": t.global_step, "mode": monitor._mode,
            "rounds": {str(step): r for step, r in monitor.rounds.items()}, "losses": [],
            "warnings": [str(w.message) for w in caught if "TaskMonitor" in str(w.message)]}


SCENARIOS = {
    # TaskMonitor: items strided over DDP processes, and FSDP2 gathered once per round, each item scored once.
    "tasks_ddp": lambda d: fit_tasks(d, ddp(), ScenarioLM()),
    "tasks_fsdp2": lambda d: fit_tasks(d, fsdp2(), ScenarioLM(shard=True)),
    "tasks_fsdp2_lockstep": lambda d: fit_tasks(d, fsdp2(), ScenarioLM(shard=True), distributed="lockstep"),
    # DDP, prompts split over the ranks: compared with a single process in the test.
    "shard": lambda d: fit(d, ddp(), ScenarioLM(), distributed="shard"),
    # DDP in lockstep, rank 0's rows end first: both ranks must make the same forwards.
    "lockstep": lambda d: fit(d, ddp(), ScenarioLM(bias="rank"), distributed="lockstep"),
    # Deadlock 1: an exception that does not unpickle, raised on rank 1 only.
    "shape_error": lambda d: fit(d, ddp(), ScenarioLM(fail="shape"), distributed="shard"),
    # Deadlock 2: a last-position-only model with fewer prompt batches than ranks, and with rank_zero.
    "last_only_few_batches": lambda d: fit(d, ddp(), ScenarioLM(last_only=True), prompts=["ab"], distributed="shard"),
    "last_only_rank_zero": lambda d: fit(d, ddp(), ScenarioLM(last_only=True), distributed="rank_zero"),
    # rank_zero with a failure on rank 0: the other rank, which ran nothing, hears of it too.
    "rank_zero_failure": lambda d: fit(d, ddp(), ScenarioLM(fail="shape", fail_rank=0), distributed="rank_zero"),
    # Deadlock 3: lockstep with an out-of-memory error on rank 1 while rank 0 waits in the per-token vote.
    "lockstep_oom": lambda d: fit(d, ddp(), ScenarioLM(bias="rank", fail="oom"), distributed="lockstep"),
    # FSDP2 on 2 CPU processes, the monitor in its default mode; one round fails on rank 1.
    "fsdp2_auto": lambda d: fit(d, fsdp2(), ScenarioLM(bias="prompt", fail="oom", fail_step=4, shard=True)),
    # FSDP2 in lockstep: ranks' rows end at different times; one round fails on rank 1.
    "fsdp2_lockstep": lambda d: fit(d, fsdp2(), ScenarioLM(bias="rank", fail="oom", fail_step=4, shard=True),
                                    distributed="lockstep"),
    # FSDP1 (FSDPStrategy) on 2 CPU processes, the monitor in its default mode; one round fails on rank 1.
    "fsdp1_auto": lambda d: fit(d, fsdp1(), ScenarioLM(bias="prompt", fail="oom", fail_step=4)),
    # FSDP1 with flat parameters (use_orig_params=False), gathered; and in lockstep.
    "fsdp1_flat_gather": lambda d: fit(d, fsdp1(use_orig_params=False), ScenarioLM(bias="prompt"),
                                       distributed="gather"),
    "fsdp1_lockstep": lambda d: fit(d, fsdp1(), ScenarioLM(bias="rank"), distributed="lockstep"),
    # DeepSpeed ZeRO-3 on 2 CPU processes (where DeepSpeed is installed), the monitor in its default mode.
    # And in lockstep: the same training, so the same samples at step 4 as the gathered run (whose hooks came back).
    **({"deepspeed3_auto": lambda d: fit(d, deepspeed3(), ScenarioLM(bias="prompt", fail="oom", fail_step=2)),
        "deepspeed3_lockstep": lambda d: fit(d, deepspeed3(), ScenarioLM(bias="prompt"), distributed="lockstep")}
       if importlib.util.find_spec("deepspeed") else {}),
    # rank_zero on a sharded strategy: rejected at setup on every rank (late: it ends a fit with an error).
    "fsdp2_rank_zero": lambda d: fit(d, fsdp2(), ScenarioLM(shard=True), distributed="rank_zero"),
    # The probe fails on both ranks, out of memory on rank 1 only: both stop before step 1 (last: a fit error).
    "probe_oom_on_one_rank": lambda d: fit(d, ddp(), ScenarioLM(fail={0: "shape", 1: "oom"}, fail_step=0,
                                                                fail_call=1), distributed="shard"),
}


def main(out_dir, names):
    for name in names:
        scenario_dir = os.path.join(out_dir, name)
        os.makedirs(scenario_dir, exist_ok=True)
        rank = int(os.environ.get("LOCAL_RANK", "0"))

        def hung(path=os.path.join(scenario_dir, f"hung{rank}")):
            with open(path, "w") as f:
                f.write("hung")
            os._exit(3)

        watchdog = threading.Timer(SCENARIO_SECONDS, hung)
        watchdog.daemon = True
        watchdog.start()
        pl.seed_everything(0, verbose=False)
        record = SCENARIOS[name](scenario_dir)
        watchdog.cancel()
        with open(os.path.join(scenario_dir, f"rank{record['rank']}.json"), "w") as f:
            json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
