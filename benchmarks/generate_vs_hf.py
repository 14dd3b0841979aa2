"""Our `generate` against transformers' `model.generate`: speed ratio and token identity.

A GPT-2-architecture model built from a config (4 layers, width 256, vocabulary 50257, 128 positions, random
weights, eval mode) completes a batch of 8 random 16-token prompts with 48 sampled tokens under temperature 0.8,
top-k 50, top-p 0.9 and repetition penalty 1.2. Both sides get the same seed for every round
(``torch.manual_seed(s)`` for HF, ``generator=torch.Generator().manual_seed(s)`` for ours); the rounds alternate
and the medians are compared. Target: ours / HF <= 0.8 with identical tokens.

Run::

    python benchmarks/generate_vs_hf.py [--repeats 7] [--threads 1] [--no-fast-path]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, machine, ratios  # noqa: E402

from lightning_gen import generate  # noqa: E402
from lightning_gen.decoding import _sampler as sampler  # noqa: E402

SAMPLING = dict(do_sample=True, temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is steadiest on a busy box)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=48)
    parser.add_argument("--no-fast-path", action="store_true",
                        help="compare with the sampling shortcuts off (lightning_gen.decoding._sampler)")
    parser.add_argument("--warm-malloc", action="store_true", help=(
        "allocate and free 16 MiB once first: glibc then raises its mmap/trim thresholds, as it does anyway in a "
        "process that has freed a large tensor (any training run), and stops returning the heap top to the OS "
        "after every step; in a fresh process that trimming costs ~1e5 page faults per call"))
    args = parser.parse_args(argv)
    if args.warm_malloc:
        del_ = torch.empty(16 << 20, dtype=torch.uint8)
        del del_
    torch.set_num_threads(args.threads)
    sampler.ENABLED = not args.no_fast_path

    torch.manual_seed(0)
    config = GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=50257, n_positions=128)
    model = GPT2LMHeadModel(config).eval()
    prompts = torch.randint(0, config.vocab_size, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompts)
    common = dict(max_new_tokens=args.new, pad_token_id=config.eos_token_id, **SAMPLING)

    def hf(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return model.generate(prompts, attention_mask=mask, **common)

    def ours(seed: int) -> torch.Tensor:
        return generate(model, prompts, attention_mask=mask, generator=torch.Generator().manual_seed(seed), **common)

    sampler.stats.reset()
    runs = alternate({"hf": hf, "ours": ours}, repeats=args.repeats)
    identical = sum(torch.equal(a, b) for a, b in zip(runs["hf"].outputs, runs["ours"].outputs))
    print(f"machine: {machine()}")
    print(f"model: GPT-2 4x256, vocab {config.vocab_size}; batch {args.batch}, prompt {args.prompt}, "
          f"{args.new} new tokens; {SAMPLING}; shortcuts {'on' if sampler.ENABLED else 'off'}"
          f"{'; malloc warmed' if args.warm_malloc else ''}")
    print(f"HF generate    {runs['hf'].summary()}")
    print(f"ours generate  {runs['ours'].summary()}")
    print(f"ours / HF: {ratios(runs['ours'], runs['hf'])}")
    print(f"token-identical: {identical}/{args.repeats} seeds; routes: {sampler.stats}")
    return 0 if identical == args.repeats else 1


if __name__ == "__main__":
    sys.exit(main())
