"""Several processes: DDP sharding with samples gathered to rank 0, and lockstep decoding for sharded models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import text_events

from lightning_gen.monitor.distributed import choose_mode, is_sharded

SCRIPT = Path(__file__).parent / "scripts" / "ddp_monitor.py"


def run_script(out_dir: Path, devices: int, distributed: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out_dir), str(devices), distributed],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {f.stem: json.loads(f.read_text()) for f in out_dir.glob("rank*.json")}


def test_ddp_shards_prompts_and_logs_each_once_like_a_single_process(tmp_path):
    single_dir, ddp_dir = tmp_path / "single", tmp_path / "ddp"
    run_script(single_dir, 1, "auto")
    ranks = run_script(ddp_dir, 2, "shard")
    assert sorted(ranks) == ["rank0", "rank1"]
    single = text_events(str(single_dir / "tb" / "version_0"))
    ddp = text_events(str(ddp_dir / "tb" / "version_0"))
    assert sorted(ddp) == sorted(single) and len(ddp) == 7  # 6 prompts + overview
    for tag, by_step in ddp.items():
        assert sorted(by_step) == [0, 2, 4]  # each step logged exactly once
        # Batches are seeded by their number, so whichever process runs one, its samples are the same. Later
        # steps differ only because two processes train on different data.
        assert by_step[0] == single[tag][0]


def test_lockstep_makes_the_same_number_of_forwards_on_every_rank(tmp_path):
    ranks = run_script(tmp_path, 2, "lockstep")
    forwards = [ranks[f"rank{r}"]["sampling_forwards"] for r in range(2)]
    # Rank 0's rows end after 2 tokens, rank 1's run to max_new_tokens; both must step the model alike.
    assert forwards[0] == forwards[1] > 0
    events = text_events(str(tmp_path / "tb" / "version_0"))
    assert sorted(events["samples/prompt_00"]) == [0, 2, 4]


class _Strategy:
    def __init__(self, name: str, world_size: int, **attrs):
        self.__class__ = type(name, (), {})
        self.world_size = world_size
        self.__dict__.update(attrs)


@pytest.mark.parametrize(
    ("name", "world", "attrs", "requested", "expected"),
    [
        ("SingleDeviceStrategy", 1, {}, "auto", "single"),
        ("DDPStrategy", 2, {}, "auto", "shard"),
        ("FSDPStrategy", 2, {}, "auto", "lockstep"),
        ("ModelParallelStrategy", 4, {}, "auto", "lockstep"),
        ("DeepSpeedStrategy", 2, {"zero_stage_3": True}, "auto", "lockstep"),
        ("DeepSpeedStrategy", 2, {"zero_stage_3": False}, "auto", "shard"),
        ("FSDPStrategy", 2, {}, "rank_zero", "rank_zero"),
    ],
)
def test_mode_follows_the_strategy(name, world, attrs, requested, expected):
    strategy = _Strategy(name, world, **attrs)
    assert choose_mode(strategy, requested) == expected
    assert is_sharded(strategy) == (expected == "lockstep" or (name == "FSDPStrategy"))


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="FSDP needs 2 CUDA GPUs")
def test_fsdp_lockstep_on_gpus(tmp_path):  # pragma: no cover - runs only where 2 GPUs exist
    ranks = run_script(tmp_path, 2, "lockstep")
    assert ranks["rank0"]["sampling_forwards"] == ranks["rank1"]["sampling_forwards"]


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
