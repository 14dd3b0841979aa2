"""Decoding speed on a GPU: our `generate` eager, our `generate(compile=True)`, and transformers' `generate`.

Two models of GPT-2 small's size (12 layers, width 768, 12 heads, vocabulary 50304, 1024 positions, random
weights: speed does not depend on them): transformers' `GPT2LMHeadModel`, run by HF `generate` and by ours (same
model, HF's dynamic cache), and the example's GPT (`examples/model.py`, litgpt's static KV-cache protocol), run
by ours eagerly and with ``compile=True`` (which needs a static cache). Each round completes a batch of random
prompts greedily or by sampling (temperature 0.8, top-k 50); rounds alternate, the first ones (compilation, CUDA
graph capture) are discarded, and the medians give tokens per second (batch x new tokens / seconds). It also
prints whether ours made HF `generate`'s tokens on the same model, and whether compiled made eager's.

It runs on the CPU too (``--device cpu``), slowly, to check the script.

Run::

    python benchmarks/gpu_decode.py [--repeats 5] [--batch 4] [--prompt 16] [--new 128] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
from _common import machine, median  # noqa: E402
from model import GPT  # noqa: E402  (examples/model.py)

from lightning_gen import generate  # noqa: E402

MODES = {"greedy": dict(do_sample=False), "sample": dict(do_sample=True, temperature=0.8, top_k=50)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    args = parser.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    heads, vocab = max(1, args.width // 64), 50304
    torch.manual_seed(0)
    ours = GPT(vocab_size=vocab, block_size=1024, n_layer=args.layers, n_head=heads, n_embd=args.width)
    ours = ours.to(device=device, dtype=dtype).eval()
    hf = GPT2LMHeadModel(GPT2Config(n_layer=args.layers, n_head=heads, n_embd=args.width, vocab_size=vocab,
                                    n_positions=1024)).to(device=device, dtype=dtype).eval()
    prompts = torch.randint(0, vocab, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1)).to(device)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"machine: {machine()}")
    print(f"device: {card}; dtype {args.dtype}; {args.layers} layers, width {args.width}, {heads} heads, vocabulary "
          f"{vocab}; batch {args.batch}, prompt {args.prompt}, {args.new} new tokens (no EOS); {args.repeats} timed "
          f"rounds after {args.warmup} warm-up")

    def timed(fn) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, out

    for mode, options in MODES.items():
        runs = {
            "ours on HF's": lambda: generate(hf, prompts, max_new_tokens=args.new, eos_token_id=None, pad_token_id=0,
                                             generator=torch.Generator(device).manual_seed(0), **options),
            "ours eager": lambda: generate(ours, prompts, max_new_tokens=args.new,
                                           generator=torch.Generator(device).manual_seed(0), **options),
            "ours compiled": lambda: generate(ours, prompts, max_new_tokens=args.new, compile=True,
                                              generator=torch.Generator(device).manual_seed(0), **options),
            # Without an EOS id, as ours: every run makes exactly `--new` tokens.
            # Seeded as ours, through the global RNG that HF draws from.
            "HF generate": lambda: (torch.manual_seed(0), hf.generate(
                prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=args.new, eos_token_id=None,
                pad_token_id=0, **options))[1],
        }
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        outputs: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for round_ in range(args.warmup + args.repeats):
                for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
                    elapsed, outputs[name] = timed(runs[name])
                    if round_ >= args.warmup:
                        seconds[name].append(elapsed)
        tokens = args.batch * args.new
        rates = {name: tokens / median(values) for name, values in seconds.items()}
        for name, rate in rates.items():
            model = "GPT2LMHeadModel" if name in ("ours on HF's", "HF generate") else "example GPT"
            print(f"[{mode:6s}] {name:14s} {model:16s} {rate:9.1f} tokens/s  (x{rate / rates['HF generate']:.2f} HF)")
        same = {"ours on HF's == HF generate": ("ours on HF's", "HF generate"),
                "ours compiled == ours eager": ("ours compiled", "ours eager")}
        print(f"[{mode:6s}] tokens identical: " + "; ".join(
            f"{label}: {torch.equal(outputs[a], outputs[b])}" for label, (a, b) in same.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
