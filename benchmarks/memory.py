"""Does sampling leak? Process memory after 1, 10 and 100 sampling rounds.

Each round is one `generate` call (4 prompts, 64 sampled tokens, temperature 0.8, top-k 40, top-p 0.9) on
two small cache models: the example's character GPT (`examples/model.py`, litgpt's KV-cache protocol, 4x128) and
a GPT-2 built from a config (4x256, vocabulary 50257, Hugging Face's `DynamicCache`, so the fast sampling path
runs). The resident set size (psutil, else ``/proc/self/statm``) is read after a garbage collection; the growth
from round 1 to round 100 should be ~0 (allocator noise of a few MiB at most), and the number of live tensors
should not grow at all.

Run::

    python benchmarks/memory.py [--rounds 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
from _common import machine  # noqa: E402
from model import GPT  # noqa: E402  (examples/model.py)

from lightning_gen import generate  # noqa: E402

SAMPLING = dict(max_new_tokens=64, do_sample=True, temperature=0.8, top_k=40, top_p=0.9)


def rss_mib() -> float:
    """Resident set size of this process, MiB."""
    gc.collect()
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() touches deprecated torch attributes of some objects
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "example GPT (litgpt cache)": (
            GPT(vocab_size=100, block_size=128, n_layer=4, n_head=4, n_embd=128).eval(), 100),
        "GPT-2 50257 (HF DynamicCache)": (GPT2LMHeadModel(GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=50257,
                                                                     n_positions=128)).eval(), 50257),
    }
    print(f"machine: {machine()}")
    worst = 0.0
    for name, (model, vocab) in models.items():
        prompts = torch.randint(0, vocab, (4, 8), generator=torch.Generator().manual_seed(1))
        readings = {}
        for r in range(1, args.rounds + 1):
            generate(model, prompts, generator=torch.Generator().manual_seed(r), pad_token_id=0, **SAMPLING)
            if r in (1, 10, args.rounds):
                readings[r] = (rss_mib(), live_tensors())
        growth = readings[args.rounds][0] - readings[1][0]
        worst = max(worst, growth)
        print(f"{name}: RSS after round 1 {readings[1][0]:.1f} MiB, round 10 {readings[10][0]:.1f} MiB, round "
              f"{args.rounds} {readings[args.rounds][0]:.1f} MiB; growth 1 -> {args.rounds}: {growth:+.1f} MiB; "
              f"live tensors {readings[1][1]} -> {readings[args.rounds][1]}")
    return 0 if worst < 16 else 1


if __name__ == "__main__":
    sys.exit(main())
