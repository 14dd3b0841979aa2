"""Several processes: DDP shards, lockstep and gathered FSDP1 and FSDP2 rounds, and failures that reach every rank.

All multi-process scenarios run in one launch of 2 CPU processes (`scripts/monitor_runs.py`, gloo), with a hard
timeout for the whole launch and a watchdog per scenario: a deadlock fails its test by name instead of hanging.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.strategies import (
    DDPStrategy,
    DeepSpeedStrategy,
    FSDPStrategy,
    ModelParallelStrategy,
    SingleDeviceStrategy,
)
from tiny import text_events

from lightning_gen.monitor.distributed import choose_mode, is_sharded

SCRIPTS = Path(__file__).parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
import monitor_runs  # noqa: E402

STEPS = [0, 2, 4]
needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="DeepSpeed is not installed (CI installs it in .ci/run; `pip install deepspeed` runs this on 2 CPUs)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Every scenario of `monitor_runs.SCENARIOS`, once, on 2 processes (about 25 s on 2 cores; 35 s where DeepSpeed
    is installed, whose import and start take most of the difference)."""
    out = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPTS / "monitor_runs.py"), str(out), *monitor_runs.SCENARIOS],
                          capture_output=True, text=True, timeout=400, env=env)
    hung = sorted(p.parent.name for p in out.glob("*/hung*"))
    assert not hung, f"scenarios hung: {hung}"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def ranks(runs: Path, scenario: str) -> list[dict]:
    found = [json.loads((runs / scenario / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in found] == [0, 1]
    return found


def logged(runs: Path, scenario: str) -> dict[str, dict[int, str]]:
    return text_events(str(runs / scenario / "tb" / "version_0"))


def single_process(tmp_path: Path, model: pl.LightningModule, **monitor_kwargs) -> dict[str, dict[int, str]]:
    """The same training and monitor on one process: the reference the shards must reproduce."""
    pl.seed_everything(0, verbose=False)
    monitor_runs.fit(str(tmp_path), "auto", model(), devices=1, **monitor_kwargs)
    return text_events(str(tmp_path / "tb" / "version_0"))


def test_ddp_shards_prompts_and_logs_each_once_like_a_single_process(runs, tmp_path):
    single = single_process(tmp_path, monitor_runs.ScenarioLM)
    ddp = logged(runs, "shard")
    assert sorted(ddp) == sorted(single) and len(ddp) == 7  # 6 prompts + overview
    for tag, by_step in ddp.items():
        assert sorted(by_step) == STEPS  # each step logged exactly once
        # Batches are seeded by their number, so whichever process runs one, its samples are the same. Later
        # steps differ only because two processes train on different data.
        assert by_step[0] == single[tag][0]
    assert all(r["global_step"] == 4 and not r["warnings"] for r in ranks(runs, "shard"))


def test_lockstep_makes_the_same_forwards_on_every_rank(runs):
    zero, one = ranks(runs, "lockstep")
    # Rank 0's rows end after 2 tokens, rank 1's run to max_new_tokens; both must step the model alike.
    assert zero["rounds"] == one["rounds"] and all(r["forwards"] > 0 for r in zero["rounds"].values())
    assert sorted(logged(runs, "lockstep")["samples/prompt_00"]) == STEPS


def test_an_exception_that_does_not_unpickle_on_one_rank_fails_the_round_on_both(runs):
    """Deadlock 1: `ShapeError(expected, got)` pickled to rank 0 broke `pickle.loads` there."""
    zero, one = ranks(runs, "shape_error")
    assert zero["global_step"] == one["global_step"] == 4
    assert len(zero["warnings"]) == 1 and "ShapeError on rank 1: expected (2, 37)" in zero["warnings"][0]
    assert "step 2" in zero["warnings"][0] and not one["warnings"]  # warned once, on rank 0
    assert sorted(logged(runs, "shape_error")["samples/prompt_00"]) == [0, 4]


@pytest.mark.parametrize("scenario", ["last_only_few_batches", "last_only_rank_zero"])
def test_last_position_only_model_is_settled_once_for_all_ranks(runs, scenario):
    """Deadlock 2: only the rank that had a batch found out it cannot score, and retried alone."""
    zero, one = ranks(runs, scenario)
    assert zero["global_step"] == one["global_step"] == 4
    assert not zero["scored"] and not one["scored"]
    assert [w for w in zero["warnings"] if "last position only" in w] == zero["warnings"] and len(zero["warnings"]) == 1
    assert sorted(logged(runs, scenario)["samples/prompt_00"]) == STEPS


def test_rank_zero_failure_reaches_the_rank_that_ran_nothing(runs):
    zero, one = ranks(runs, "rank_zero_failure")
    assert zero["global_step"] == one["global_step"] == 4
    assert len(zero["warnings"]) == 1 and "ShapeError" in zero["warnings"][0] and "step 2" in zero["warnings"][0]
    assert one["rounds"]["2"]["forwards"] == 0 and one["rounds"]["2"]["collectives"] == zero["rounds"]["2"]["collectives"]
    assert sorted(logged(runs, "rank_zero_failure")["samples/prompt_00"]) == [0, 4]


def test_lockstep_failure_on_one_rank_reaches_the_other_through_the_vote(runs):
    """Deadlock 3: an OOM on rank 1 while rank 0 waits in the per-token all-reduce."""
    zero, one = ranks(runs, "lockstep_oom")
    assert zero["global_step"] == one["global_step"] == 4
    assert len(zero["warnings"]) == 1 and "OutOfMemoryError on rank 1" in zero["warnings"][0]
    assert zero["rounds"]["2"] == one["rounds"]["2"]  # both left the failed round at the same vote
    assert zero["rounds"]["2"]["forwards"] < zero["rounds"]["4"]["forwards"]
    assert sorted(logged(runs, "lockstep_oom")["samples/prompt_00"]) == [0, 4]


@pytest.fixture(scope="module")
def single_prompt_biased(tmp_path_factory) -> dict[str, dict[int, str]]:
    """One process's samples of the prompt-biased model: what every gathered sharded run must log at step 0."""
    return single_process(tmp_path_factory.mktemp("single"), lambda: monitor_runs.ScenarioLM(bias="prompt"))


@pytest.mark.parametrize(("scenario", "ranks_hold"), [("fsdp2_auto", "half each"), ("fsdp1_auto", "all each"),
                                                    ("fsdp1_flat_gather", "all each"),
                                                    pytest.param("deepspeed3_auto", "all each", marks=needs_deepspeed)])
def test_what_the_gather_adds_is_what_fits_gathered_weighs(runs, scenario, ranks_hold):
    """How `auto` judges that the gathered model fits (the bytes it adds, against half the free memory), on the
    real sharded runs. FSDP2: each rank adds the other's half (a DTensor's global size less its local one); FSDP1:
    each unit's whole flat parameter (its all-gather's buffer, beside the shard); ZeRO-3: every partitioned
    parameter whole."""
    whole = sum(p.numel() * p.element_size() for p in monitor_runs.ScenarioLM().parameters())
    zero, one = ranks(runs, scenario)
    if ranks_hold == "half each":
        assert zero["gathered_bytes"] + one["gathered_bytes"] == whole and zero["gathered_bytes"] > 0
    else:  # with original parameters FSDP1 pads them to its alignment inside the flat parameter: a few bytes more
        assert zero["gathered_bytes"] == one["gathered_bytes"] and 0 <= zero["gathered_bytes"] - whole <= 64


def assert_gathered(zero: dict, one: dict, *, units: int, exchange: dict[str, int]) -> None:
    """Both ranks gathered, finished training, took shares of different lengths, and called a constant set of
    collectives per round: ``units`` all-gathers of the sharded modules and the samples' ``exchange``."""
    assert zero["mode"] == one["mode"] == "gather"
    assert zero["global_step"] == one["global_step"] == 4  # training finished on both ranks
    # Rows end at different times (prompt-dependent EOS), so the shares took different forwards ...
    assert zero["rounds"]["0"]["forwards"] != one["rounds"]["0"]["forwards"]
    # ... and yet a round is one all-gather per sharded module and the exchange of the samples, nothing per token.
    for rank in (zero, one):
        for counts in (r["collectives"] for r in rank["rounds"].values()):
            gathers = {name: n for name, n in counts.items() if name.startswith("all_gather")}  # by torch release
            assert sum(gathers.values()) == units + exchange.get("all_gather", 0)
            assert {name: n for name, n in counts.items() if name not in gathers} == {
                name: n for name, n in exchange.items() if name != "all_gather"}


def test_fsdp2_default_mode_gathers_once_per_round_like_a_single_process(runs, single_prompt_biased):
    """The real sharded run: ModelParallelStrategy + `fully_shard` on 2 CPU processes, the monitor's defaults."""
    zero, one = ranks(runs, "fsdp2_auto")
    # 2 FSDP2 modules (all_gather_into_tensor or the like); the exchange: 2 all_gathers and a broadcast.
    assert_gathered(zero, one, units=2, exchange={"all_gather": 2, "broadcast_object_list": 1})
    assert all(r["collectives"]["all_gather"] == 2 for rank in (zero, one) for r in rank["rounds"].values())
    assert len(zero["warnings"]) == 1 and "step 4" in zero["warnings"][0] and "on rank 1" in zero["warnings"][0]
    events = logged(runs, "fsdp2_auto")
    assert len(events) == 7 and all(sorted(by_step) == [0, 2] for by_step in events.values())
    # Same weights at step 0 and batches seeded by number: the samples of one process with `batch_size` set.
    single = single_prompt_biased
    assert {tag: by_step[0] for tag, by_step in events.items()} == {tag: s[0] for tag, s in single.items()}


@pytest.mark.parametrize("scenario", ["fsdp1_auto", "fsdp1_flat_gather"])
def test_fsdp1_gathers_once_per_round_like_a_single_process(runs, single_prompt_biased, scenario):
    """Lightning's FSDPStrategy (FSDP1, the MLP a unit inside the root's) on 2 CPU processes, with the original
    parameters and with flat ones: `summon_full_params` once per round, then each rank decodes its share alone."""
    zero, one = ranks(runs, scenario)
    # gloo's FSDP1 all-gathers are all_gather calls: 2 units, then the exchange's 2 and its broadcast.
    assert_gathered(zero, one, units=2, exchange={"all_gather": 2, "broadcast_object_list": 1})
    events, single = logged(runs, scenario), single_prompt_biased
    assert {tag: by_step[0] for tag, by_step in events.items()} == {tag: s[0] for tag, s in single.items()}
    if scenario == "fsdp1_auto":  # the default mode picked gather; a round failing on rank 1 is skipped on both
        assert len(zero["warnings"]) == 1 and "step 4" in zero["warnings"][0] and "on rank 1" in zero["warnings"][0]
        assert len(events) == 7 and all(sorted(by_step) == [0, 2] for by_step in events.values())
    else:
        assert not zero["warnings"] and all(sorted(by_step) == STEPS for by_step in events.values())


@needs_deepspeed
def test_deepspeed_zero3_gathers_once_per_round_like_a_single_process(runs, single_prompt_biased):
    """DeepSpeed ZeRO stage 3 (every parameter partitioned) on 2 CPU processes, the monitor's defaults."""
    zero, one = ranks(runs, "deepspeed3_auto")
    # DeepSpeed's own all-gathers go through a function it looked up at start, which the count does not see; what
    # it sees are the exchange and any torch.distributed call of ZeRO-3's hooks (their trace check broadcasts).
    assert_gathered(zero, one, units=0, exchange={"all_gather": 2, "broadcast_object_list": 1})
    for rank in (zero, one):
        assert rank["sampled_shapes"] == [[48, 24]]  # every sampling forward saw the whole weight ...
        assert all(r["shape_after"] == [0] for r in rank["rounds"].values())  # ... partitioned again after
        # Setting ZeRO-3's hooks up again after a round leaves DeepSpeed's module stack as deep as it was.
        assert len({r["module_stack"] for r in rank["rounds"].values()}) == 1 and len(rank["rounds"]) == 3
    # A round failing on rank 1 is skipped on both, and training and the next round go on.
    assert len(zero["warnings"]) == 1 and "step 2" in zero["warnings"][0] and "on rank 1" in zero["warnings"][0]
    events = logged(runs, "deepspeed3_auto")
    assert len(events) == 7 and all(sorted(by_step) == [0, 4] for by_step in events.values())
    single = single_prompt_biased
    assert {tag: by_step[0] for tag, by_step in events.items()} == {tag: s[0] for tag, s in single.items()}
    # DeepSpeed loaded no C++ op: where none is built yet (a fresh CI machine) each is minutes of compiling, past the
    # scenario's watchdog, so a machine whose cache holds one would pass here and hang there.
    assert zero["deepspeed_ops"] == one["deepspeed_ops"] == []


@needs_deepspeed
def test_deepspeed_zero3_gathered_rounds_leave_training_as_lockstep_rounds_do(runs):
    zero, one = ranks(runs, "deepspeed3_lockstep")
    assert zero["mode"] == "lockstep" and zero["global_step"] == one["global_step"] == 4 and not zero["warnings"]
    alike = [{step: (r["collectives"], r["forwards"]) for step, r in rank["rounds"].items()} for rank in (zero, one)]
    assert alike[0] == alike[1] and zero["rounds"]["0"]["collectives"]["all_reduce"] >= 5  # the vote, per token
    assert all(sorted(by_step) == STEPS for by_step in logged(runs, "deepspeed3_lockstep").values())
    # Rounds that gathered (and took ZeRO-3's hooks off and on again, one of them failing) left training exactly as
    # lockstep rounds, which keep the hooks, did.
    gathered = ranks(runs, "deepspeed3_auto")
    assert [r["losses"] for r in gathered] == [zero["losses"], one["losses"]] and len(zero["losses"]) == 4


def test_fsdp1_lockstep_calls_the_root_and_gathers_at_every_forward(runs):
    zero, one = ranks(runs, "fsdp1_lockstep")
    assert zero["mode"] == "lockstep" and zero["global_step"] == one["global_step"] == 4 and not zero["warnings"]
    alike = [{step: (r["collectives"], r["forwards"]) for step, r in rank["rounds"].items()} for rank in (zero, one)]
    assert alike[0] == alike[1]  # the same forwards and collectives (the shards differ in size: 1152 and 0)
    counts, forwards = zero["rounds"]["0"]["collectives"], zero["rounds"]["0"]["forwards"]
    assert counts["all_gather"] >= forwards  # the inner unit at every forward (the root stays gathered)
    assert counts["all_reduce"] >= forwards - 6  # the vote, per token
    assert sorted(logged(runs, "fsdp1_lockstep")["samples/prompt_00"]) == STEPS
    # Gathered rounds (nested units' forwards swapped and put back) left training exactly as lockstep rounds did.
    assert [r["losses"] for r in ranks(runs, "fsdp1_auto")] == [zero["losses"], one["losses"]]


def test_fsdp2_lockstep_steps_together_and_costs_collectives_per_token(runs):
    zero, one = ranks(runs, "fsdp2_lockstep")
    assert zero["mode"] == "lockstep" and zero["global_step"] == one["global_step"] == 4
    assert zero["rounds"] == one["rounds"]  # the same forwards and collectives, rank 1's rows running longer
    assert "OutOfMemoryError on rank 1" in zero["warnings"][0] and len(zero["warnings"]) == 1
    # Per token: an all-gather of the inner FSDP2 module at every forward, and the vote's all-reduce.
    counts, forwards = zero["rounds"]["0"]["collectives"], zero["rounds"]["0"]["forwards"]
    assert sum(n for name, n in counts.items() if name.startswith("all_gather_")) >= forwards
    assert counts["all_reduce"] >= forwards - 6  # the 6 scoring forwards take no vote
    assert "barrier" not in counts  # the vote is one all-reduce, without Lightning's barrier before it
    assert sorted(logged(runs, "fsdp2_lockstep")["samples/prompt_00"]) == [0, 2]


def test_rank_zero_on_a_sharded_strategy_is_rejected_at_setup_on_every_rank(runs):
    for rank in ranks(runs, "fsdp2_rank_zero"):
        assert rank["error"].startswith("ValueError: `distributed`='rank_zero' cannot work with ModelParallelStrategy")
        assert rank["global_step"] == 0 and rank["rounds"] == {}


def _strategy(cls: type, world: int, **properties) -> object:
    """An instance of a user's subclass of ``cls`` (never initialised: only its type and world size matter)."""
    sub = type(f"User{cls.__name__}", (cls,), {"world_size": property(lambda self: world),
                                               **{k: property(lambda self, v=v: v) for k, v in properties.items()}})
    return object.__new__(sub)


@pytest.mark.parametrize(
    ("cls", "world", "properties", "requested", "can_gather", "expected"),
    [
        (SingleDeviceStrategy, 1, {}, "auto", False, "single"),
        (DDPStrategy, 2, {}, "auto", False, "shard"),
        (DDPStrategy, 2, {}, "gather", False, "shard"),
        (FSDPStrategy, 2, {}, "auto", False, "lockstep"),
        (ModelParallelStrategy, 4, {}, "auto", False, "lockstep"),
        (ModelParallelStrategy, 4, {}, "auto", True, "gather"),
        (DeepSpeedStrategy, 2, {"zero_stage_3": True}, "auto", False, "lockstep"),
        (DeepSpeedStrategy, 2, {"zero_stage_3": False}, "auto", False, "shard"),
        (DDPStrategy, 2, {}, "rank_zero", False, "rank_zero"),
    ],
)
def test_mode_follows_the_strategy_subclasses_included(cls, world, properties, requested, can_gather, expected):
    strategy = _strategy(cls, world, **properties)
    assert choose_mode(strategy, requested, can_gather=can_gather) == expected
    assert is_sharded(strategy) == (expected in ("lockstep", "gather") or cls is FSDPStrategy)


@pytest.mark.parametrize("cls", [FSDPStrategy, ModelParallelStrategy, DeepSpeedStrategy])
def test_rank_zero_and_impossible_gather_are_rejected_on_sharded_strategies(cls):
    strategy = _strategy(cls, 2, **({"zero_stage_3": True} if cls is DeepSpeedStrategy else {}))
    with pytest.raises(ValueError, match="`distributed`='rank_zero' cannot work with User"):
        choose_mode(strategy, "rank_zero")
    with pytest.raises(ValueError, match="`distributed`='gather' needs parameters it can gather: FSDP1 units under "
                       f"FSDPStrategy, FSDP2 .* under ModelParallelStrategy, or ZeRO stage 3 parameters under "
                       f"DeepSpeedStrategy; User{cls.__name__} with this model"):
        choose_mode(strategy, "gather", can_gather=False)


def test_generate_keeps_stepping_until_all_processes_finish():
    """A process whose rows ended keeps calling the model (without extending them) until the collective agrees."""
    calls = []

    class EndsAtOnce(torch.nn.Module):
        def forward(self, ids):
            calls.append(ids.shape[1])
            logits = torch.zeros(ids.shape[0], ids.shape[1], 5)
            logits[..., 4] = 1.0  # always EOS
            return logits

    votes = []

    def others_need_three_more(done: bool) -> bool:
        votes.append(done)
        return len(votes) >= 4

    from lightning_gen import generate

    out = generate(EndsAtOnce(), torch.tensor([[1, 2]]), max_new_tokens=10, eos_token_id=4,
                   all_finished=others_need_three_more)
    assert out.tolist() == [[1, 2, 4]]  # finished after one token ...
    assert votes == [True, True, True, True]  # ... but voted every step
    assert len(calls) == 4  # prefill + 3 forwards while waiting for the others


@pytest.fixture
def world_of_one(tmp_path):
    """A real gloo process group of one process and a DDPStrategy on it: the round's exchange, in milliseconds."""
    from lightning.fabric.plugins.environments import LightningEnvironment

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        yield DDPStrategy(parallel_devices=[torch.device("cpu")], cluster_environment=LightningEnvironment())
    finally:
        torch.distributed.destroy_process_group()


def test_what_does_not_pickle_arrives_as_a_plain_failure(world_of_one):
    from lightning_gen.monitor._failures import Failure
    from lightning_gen.monitor.distributed import gather_to_zero

    (arrived,) = gather_to_zero(world_of_one, [lambda: None])  # a lambda does not pickle
    assert isinstance(arrived, Failure) and arrived.rank == 0 and "pickle" in arrived.message.lower()


def test_the_exchange_raises_the_original_where_it_happened(world_of_one):
    from lightning_gen.monitor.distributed import run_everywhere

    def fails(vote):
        raise monitor_runs.ShapeError((1, 2), (3, 4))

    for mode in ("shard", "gather", "lockstep", "rank_zero"):
        with pytest.raises(monitor_runs.ShapeError, match="expected"):
            run_everywhere(world_of_one, mode, fails, is_global_zero=True)
    votes = []

    def decodes(vote):
        votes.append(vote(False))  # not finished ...
        votes.append(vote(True))  # ... finished: the world agrees
        return ["sample"]

    assert run_everywhere(world_of_one, "lockstep", decodes, is_global_zero=True) == ["sample"]
    assert votes == [False, True]


@pytest.mark.parametrize(("scenario", "mode"), [("tasks_ddp", "shard"), ("tasks_fsdp2", "gather"),
                                              ("tasks_fsdp2_lockstep", "lockstep")])
def test_task_monitor_scores_each_item_once_over_the_processes_and_logs_each_task_once_per_step(runs, scenario,
                                                                                                 mode):
    from lightning_gen.evaluation.tasks import load_tasks

    zero, one = ranks(runs, scenario)
    assert zero["mode"] == one["mode"] == mode
    assert zero["global_step"] == one["global_step"] == 4 and not zero["warnings"] and not one["warnings"]
    tasks = {task.name: len(task) for task in load_tasks(monitor_runs.TASKS, tokenizer=monitor_runs.CharTokenizer(eos=True),
                                                         context_length=16)}
    for step in ("0", "2", "4"):
        shares = [rank["rounds"][step]["scored"] for rank in (zero, one)]
        for name, count in tasks.items():
            if mode == "lockstep":  # every process scores every item, in step (its forwards are collectives)
                assert shares[0][name] == shares[1][name] == list(range(count))
            else:  # strided: disjoint shares that cover every item
                assert sorted(shares[0][name] + shares[1][name]) == list(range(count))
                assert shares[0][name] and shares[1][name]
        records = zero["rounds"][step]["records"]
        assert sorted(r["task"] for r in records) == sorted(tasks) and not one["rounds"][step]["records"]
        choices = next(r for r in records if r["task"] == "choices")
        assert [e["index"] for e in choices["examples"]] == list(range(tasks["choices"]))
    lines = (runs / scenario / "tb" / "version_0" / "evaluations.jsonl").read_text().splitlines()
    assert len(lines) == 3 * len(tasks)  # each task once per step, written by rank 0 only


def test_a_probe_out_of_memory_on_one_rank_does_not_train_it_alone_when_the_other_rank_stops(runs):
    """The probe fails everywhere, out of memory on rank 1 only: rank 1 alone would warn and train, and hang at the
    first gradient all-reduce. Whether to train is decided together, so both stop before step 1."""
    zero, one = ranks(runs, "probe_oom_on_one_rank")
    assert zero["error"].startswith("ProbeError") and "with ShapeError" in zero["error"]
    assert one["error"].startswith("OutOfMemoryError")
    assert zero["global_step"] == one["global_step"] == 0 and zero["rounds"] == one["rounds"] == {}
