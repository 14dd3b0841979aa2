"""How much time `generate` adds to the model's own forward calls.

A character-level GPT (`examples/model.py`: 4 layers, width 128, 4 heads, a 128-character context, litgpt's
KV-cache protocol) completes a batch of prompts twice per round:

* ``generate``: through the KV-cache adapter (``litgpt``), and through the plain adapter (the whole sequence
  re-run every step);
* ``forwards``: a hand-written loop making exactly the same forward calls (same inputs, same positions, cache set
  and cleared the same way) with the tokens precomputed, i.e. the cost of the model alone.

The overhead ratio is generate / forwards (medians over alternating rounds); target <= 1.10. Both greedy decoding
and sampling (temperature 0.8, top-k 40, as in the example's monitor) are measured. For KV-cache sampling a third
run, ``forwards+sampling``, adds HF's sampling arithmetic written out by hand (temperature, top-k mask, softmax,
``torch.multinomial``) to the same forward calls: what any loop with HF's semantics must at least do, and on a
model this small already about a tenth of the forward's time.

Run::

    python benchmarks/loop_overhead.py [--repeats 21] [--threads 1] [--batch 4] [--new 96]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
from _common import alternate, machine, ratios  # noqa: E402
from model import GPT  # noqa: E402  (examples/model.py)

from lightning_gen import generate  # noqa: E402

TEMPERATURE, TOP_K = 0.8, 40
MODES = {"greedy": dict(do_sample=False), "sample": dict(do_sample=True, temperature=TEMPERATURE, top_k=TOP_K)}


def cache_forwards(model: GPT, tokens: torch.Tensor, prompt: int) -> torch.Tensor:
    """The KV-cache adapter's forward calls for ``tokens`` `(B, L)` whose first ``prompt`` are the prompt."""
    batch, length = tokens.shape
    positions = [torch.tensor([p]) for p in range(prompt, length - 1)]  # precomputed, unlike a real loop
    model.set_kv_cache(batch_size=batch, max_seq_length=length, device=tokens.device)
    try:
        logits = model(tokens[:, :prompt], input_pos=torch.arange(prompt))
        for pos in positions:
            logits = model(tokens[:, pos:pos + 1], input_pos=pos)
    finally:
        model.clear_kv_cache()
    return logits


def cache_forwards_sampling(model: GPT, tokens: torch.Tensor, prompt: int, seed: int) -> torch.Tensor:
    """`cache_forwards` plus HF's sampling arithmetic written out (temperature, top-k, softmax, multinomial):
    the least any loop with HF's semantics can do. Returns the tokens it draws, which must be ours."""
    batch, length = tokens.shape
    out = tokens.clone()
    positions = [torch.tensor([p]) for p in range(prompt, length - 1)]
    temperature, top_k = TEMPERATURE, TOP_K
    generator = torch.Generator().manual_seed(seed)
    model.set_kv_cache(batch_size=batch, max_seq_length=length, device=tokens.device)
    try:
        logits = model(tokens[:, :prompt], input_pos=torch.arange(prompt))
        for i in range(prompt, length):
            scores = logits[:, -1].float() / temperature
            scores = scores.masked_fill(scores < torch.topk(scores, top_k)[0][..., -1, None], float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            out[:, i] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            if i < length - 1:
                logits = model(out[:, i:i + 1], input_pos=positions[i - prompt])
    finally:
        model.clear_kv_cache()
    return out


def plain_forwards(model: GPT, tokens: torch.Tensor, prompt: int) -> torch.Tensor:
    """The plain adapter's forward calls: the whole sequence so far, every step."""
    logits = None
    for length in range(prompt, tokens.shape[1]):
        logits = model(tokens[:, :length])
    return logits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=8)
    parser.add_argument("--new", type=int, default=96)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(vocab_size=100, block_size=128, n_layer=4, n_head=4, n_embd=128).eval()
    prompts = torch.randint(0, 100, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1))
    print(f"machine: {machine()}")
    print(f"model: examples/model.py GPT 4x128, vocab 100, context 128; batch {args.batch}, prompt {args.prompt}, "
          f"{args.new} new tokens")
    failures = 0
    for adapter, forwards in (("litgpt", cache_forwards), ("plain", plain_forwards)):
        for mode, options in MODES.items():
            def ours(seed: int, adapter=adapter, options=options) -> torch.Tensor:
                return generate(model, prompts, max_new_tokens=args.new, adapter=adapter,
                                generator=torch.Generator().manual_seed(max(seed, 0)), **options)

            tokens = ours(0)
            assert tokens.shape[1] == args.prompt + args.new

            def alone(seed: int, forwards=forwards, tokens=tokens) -> torch.Tensor:
                with torch.no_grad():
                    return forwards(model, tokens, args.prompt)

            compared = {"generate": ours, "forwards": alone}
            if adapter == "litgpt" and mode == "sample":
                def hand(seed: int, tokens=tokens) -> torch.Tensor:
                    with torch.no_grad():
                        return cache_forwards_sampling(model, tokens, args.prompt, max(seed, 0))

                compared["forwards+sampling"] = hand
            runs = alternate(compared, repeats=args.repeats)
            ratio = sorted(runs["generate"].wall)[args.repeats // 2] / sorted(runs["forwards"].wall)[args.repeats // 2]
            failures += ratio > 1.10
            for name in compared:
                print(f"[{adapter:6s} {mode:6s}] {name:17s} {runs[name].summary()}")
            label = f"[{adapter:6s} {mode:6s}]"
            print(f"{label} overhead generate / forwards: {ratios(runs['generate'], runs['forwards'])}")
            if "forwards+sampling" in runs:
                pairs = zip(runs["generate"].outputs, runs["forwards+sampling"].outputs)
                same = all(torch.equal(a, b) for a, b in pairs)
                print(f"{label} (forwards + HF sampling arithmetic) / forwards: "
                      f"{ratios(runs['forwards+sampling'], runs['forwards'])}")
                print(f"{label} generate / (forwards + HF sampling arithmetic): "
                      f"{ratios(runs['generate'], runs['forwards+sampling'])}; same tokens: {same}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
