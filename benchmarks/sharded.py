"""Round time and collectives per round on a sharded model: ``distributed="gather"`` against ``"lockstep"``.

2 CPU processes (gloo), the same model, prompts and seed in both modes, sharded by ``--strategy``: ``fsdp2``
(Lightning's ModelParallelStrategy, `fully_shard` on every block and on the root), ``fsdp1`` (FSDPStrategy, every
block an FSDP unit inside the root's) or ``deepspeed`` (DeepSpeedStrategy, ZeRO stage 3, every parameter
partitioned; needs ``pip install deepspeed``). FSDP1 and DeepSpeed run on the CPU through the test suite's
subclasses of Lightning's strategies (`tests/monitor/scripts/monitor_runs.py`), which only let the CPU through.
For each mode the monitor samples at the start of training and after each of ``--steps`` steps; rank 0 prints
the median round time (wall clock) and the collectives each round called (`count_collectives`: FSDP's
all-gathers and Lightning's reduce / all_gather / broadcast), and whether both modes wrote the same samples at
step 0 (same weights, batches seeded by number).

DeepSpeed's own all-gathers go through a function it looked up at start, so for ``deepspeed`` the count shows
only the torch.distributed calls (the samples' exchange, the lockstep vote, ZeRO-3's trace checks).

Usage: python benchmarks/sharded.py [--strategy fsdp2] [--layers 4] [--width 256] [--new-tokens 32] [--prompts 8]
       [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from datetime import timedelta

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "monitor", "scripts"))
from _common import machine  # noqa: E402
from monitor_runs import CPUDeepSpeedStrategy, CPUFSDPStrategy  # noqa: E402

from lightning_gen import GenerationMonitor  # noqa: E402
from lightning_gen.monitor.distributed import count_collectives  # noqa: E402

VOCAB = 128


class Tokenizer:
    vocab_size = VOCAB
    eos_token_id = None

    def encode(self, text: str) -> list[int]:
        return [ord(c) % VOCAB for c in text]

    def decode(self, ids) -> str:
        return "".join(chr(32 + i % 95) for i in ids)


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class ShardedLM(pl.LightningModule):
    """Embedding, ``layers`` residual MLP blocks, a head: each block an FSDP2 unit, as a transformer's layers are."""

    def __init__(self, layers: int, width: int, context: int, *, fsdp2: bool) -> None:
        super().__init__()
        self.fsdp2 = fsdp2
        self.tokenizer = Tokenizer()
        self.block_size = context
        self.emb = nn.Embedding(VOCAB, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(layers))
        self.head = nn.Linear(width, VOCAB)

    def configure_model(self) -> None:
        if not self.fsdp2:
            return
        from torch.distributed.fsdp import fully_shard

        for block in self.blocks:
            fully_shard(block)
        fully_shard(self)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(x)  # (B, T, V)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        logits = self(x[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), x[:, 1:].reshape(-1))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        data = torch.randint(0, VOCAB, (64, 17), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=8)


class Timed(GenerationMonitor):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rounds: list[tuple[float, int]] = []
        self.first: list[str] | None = None

    def run_now(self, trainer, step):  # every round, scheduled or asked for, runs through it
        with count_collectives() as counts:
            start = time.perf_counter()
            samples = super().run_now(trainer, step)
            seconds = time.perf_counter() - start
        self.rounds.append((seconds, sum(counts.values())))
        if self.first is None:
            self.first = [s.completion for s in samples]
        return samples


def strategy(name: str) -> pl.strategies.Strategy:
    timeout = timedelta(minutes=5)
    if name == "fsdp1":
        return CPUFSDPStrategy(auto_wrap_policy={Block}, use_orig_params=True, timeout=timeout)
    if name == "deepspeed":
        return CPUDeepSpeedStrategy(config={"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}},
                                    process_group_backend="gloo", timeout=timeout,
                                    parallel_devices=[torch.device("cpu", i) for i in range(2)])
    return ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, timeout=timeout)


def run(mode: str, args: argparse.Namespace) -> Timed:
    pl.seed_everything(0, verbose=False)
    prompts = [f"prompt number {i}" for i in range(args.prompts)]
    monitor = Timed(prompts, every_n_train_steps=1, distributed=mode, batch_size=max(1, args.prompts // 2),
                    generation={"max_new_tokens": args.new_tokens, "do_sample": True}, log_metrics=False,
                    sample_on_train_end=False, console="off")
    model = ShardedLM(args.layers, args.width, context=64 + args.new_tokens, fsdp2=args.strategy == "fsdp2")
    trainer = pl.Trainer(accelerator="cpu", devices=2, max_steps=args.steps, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                         strategy=strategy(args.strategy))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model)
    assert monitor._mode == mode, monitor._mode
    return monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["fsdp2", "fsdp1", "deepspeed"], default="fsdp2")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {mode: run(mode, args) for mode in ("gather", "lockstep")}
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return
    print(machine())
    sharding = {"fsdp2": "ModelParallelStrategy + fully_shard", "fsdp1": "FSDPStrategy (FSDP1), a unit per block",
                "deepspeed": "DeepSpeedStrategy, ZeRO stage 3"}[args.strategy]
    print(f"2 processes, {sharding}, {args.layers} blocks of width {args.width}, "
          f"{args.prompts} prompts, {args.new_tokens} new tokens, {len(results['gather'].rounds)} rounds per mode")
    print(f"{'mode':<9} {'round s (median)':>17} {'collectives / round':>20}")
    for mode, monitor in results.items():
        seconds = statistics.median(s for s, _ in monitor.rounds)
        collectives = statistics.median(c for _, c in monitor.rounds)
        print(f"{mode:<9} {seconds:>17.3f} {collectives:>20.0f}")
    ratio = statistics.median(s for s, _ in results["lockstep"].rounds) / statistics.median(
        s for s, _ in results["gather"].rounds)
    print(f"lockstep / gather round time: {ratio:.2f}; same samples at step 0: "
          f"{results['gather'].first == results['lockstep'].first}")


if __name__ == "__main__":
    main()
