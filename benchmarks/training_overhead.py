"""What `GenerationMonitor` costs a training run: nothing between rounds, and a round in training steps.

The example (`examples/pretrain.py`: a 4-layer, 128-wide character GPT on CPython's pydoc topics, batch 32 of 128
characters) trains for a few dozen steps with a real `Trainer` and `TensorBoardLogger`, in three set-ups that
alternate within one process:

* ``without``: no monitor;
* ``idle``: a monitor attached with the example's generation settings but never due (its per-step check only);
  throughput idle / without is the figure of merit, target >= 0.99;
* ``one round``: the same monitor due once, mid-run; the extra time of that step, in median steps, is the cost
  of one sampling round (4 prompts, 96 sampled characters, temperature 0.8, top-k 40).

Throughput is steps per second over the steps after a warm-up, from a callback timing each batch start.

Run::

    python benchmarks/training_overhead.py [--repeats 5] [--steps 24] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
from _common import machine  # noqa: E402
from data import CharDataModule  # noqa: E402  (examples/data.py)
from pretrain import CharGPT  # noqa: E402  (examples/pretrain.py)

from lightning_gen import GenerationMonitor  # noqa: E402

PROMPTS = ["The ", "def ", "In Python, a list is", "The for statement"]
GENERATION = {"max_new_tokens": 96, "do_sample": True, "temperature": 0.8, "top_k": 40}


class StepClock(pl.Callback):
    """Wall and process CPU time of every training batch start, and of the end of training."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append((time.perf_counter(), time.process_time()))

    def on_train_end(self, trainer, pl_module) -> None:
        self.starts.append((time.perf_counter(), time.process_time()))

    def intervals(self, cpu: bool = False) -> list[float]:
        return [b[cpu] - a[cpu] for a, b in zip(self.starts, self.starts[1:])]


def fit(datamodule: CharDataModule, steps: int, monitor: GenerationMonitor | None, log_dir: str) -> StepClock:
    """Train a fresh, identically seeded example model for ``steps`` steps; the clock of its steps."""
    pl.seed_everything(1234, verbose=False)
    model = CharGPT(vocab_size=datamodule.vocab_size, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0)
    clock = StepClock()
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, limit_val_batches=0, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
        logger=TensorBoardLogger(log_dir, name="bench"), callbacks=[clock] + ([monitor] if monitor else []),
    )
    trainer.fit(model, datamodule=datamodule)
    return clock


def monitor(every: int) -> GenerationMonitor:
    return GenerationMonitor(PROMPTS, every_n_train_steps=every, sample_on_train_start=False,
                             sample_on_train_end=False, generation=dict(GENERATION))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--warmup", type=int, default=4, help="first steps left out of the throughput")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import logging
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    datamodule = CharDataModule(block_size=128, batch_size=32)
    due_at = args.steps // 2
    throughput: dict[str, list[float]] = {"without": [], "idle": []}
    cpu_throughput: dict[str, list[float]] = {"without": [], "idle": []}
    round_steps: list[float] = []
    round_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as log_dir:
        fit(datamodule, args.warmup + 2, None, log_dir)  # warm-up: imports, allocator, data
        for r in range(args.repeats):
            order = ["without", "idle", "round"] if r % 2 == 0 else ["round", "idle", "without"]
            for name in order:
                if name == "round":
                    steps = fit(datamodule, args.steps, monitor(due_at), log_dir).intervals()
                    # The round runs in on_train_batch_end of step `due_at` (global_step == due_at after it), and
                    # again at the last step when it is a multiple of `due_at`: that one is left out.
                    others = steps[args.warmup:due_at - 1] + steps[due_at:-1]
                    typical = statistics.median(others)
                    round_seconds.append(steps[due_at - 1] - typical)
                    round_steps.append(round_seconds[-1] / typical)
                else:
                    clock = fit(datamodule, args.steps, monitor(10**9) if name == "idle" else None, log_dir)
                    for cpu, out in ((False, throughput), (True, cpu_throughput)):
                        timed = clock.intervals(cpu)[args.warmup:]
                        out[name].append(len(timed) / sum(timed))
    without, idle = statistics.median(throughput["without"]), statistics.median(throughput["idle"])
    print(f"machine: {machine()}")
    print(f"example: CharGPT 4x128, vocab {datamodule.vocab_size}, batch 32 x 128 chars; {args.steps} steps per fit "
          f"({args.warmup} warm-up left out), {args.repeats} alternating repeats")
    print(f"without monitor   median {without:6.2f} steps/s   runs {[round(t, 2) for t in throughput['without']]}")
    print(f"idle monitor      median {idle:6.2f} steps/s   runs {[round(t, 2) for t in throughput['idle']]}")
    paired = statistics.median([i / w for i, w in zip(throughput["idle"], throughput["without"])])
    cpu_ratio = statistics.median(cpu_throughput["idle"]) / statistics.median(cpu_throughput["without"])
    print(f"throughput idle / without: {idle / without:.3f} (wall medians), {paired:.3f} (paired wall), "
          f"{cpu_ratio:.3f} (process CPU time medians); target >= 0.99")
    print(f"one sampling round ({len(PROMPTS)} prompts, {GENERATION}): median {statistics.median(round_seconds):.3f} s "
          f"= {statistics.median(round_steps):.2f} training steps   runs {[round(s, 2) for s in round_steps]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
