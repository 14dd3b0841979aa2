"""The least an exact sampling step can cost on a matrix row, beside what the model's forward call costs.

Any sampler that returns ``torch.multinomial``'s tokens *and* leaves the generator where multinomial leaves it must
draw one float64 uniform per entry of the batch x vocabulary scores (multinomial's ``exponential_`` does; on the CPU
``uniform_`` is the cheapest way to draw the same numbers, which `lightning_gen.decoding._draws.emulated` checks). A
row with a top-k must also find the k largest scores of each row (one ``topk``). This script times, for one row of
`matrix.py`, in one process and taking turns round by round:

* ``forward``: one decode step of the model, the forward calls of `matrix.forwards` divided by their number;
* ``uniform``: ``uniform_`` over float64 `(B, V)`;
* ``topk``: ``topk(k + 1)`` of the row's real scores (the top-k warper's own call);
* ``step``: our whole sampling step (`Sampler.sample`) on those scores, with the row's processors.

It prints the medians, the floor ``1 + (uniform + topk) / forward`` (the ``ours / forwards`` of a sampler that did
nothing else: no repetition penalty, no softmax, no loop), what the 1.3 target leaves for everything else, and what
our step spends beyond the floor.

Run::

    python benchmarks/exact_floor.py [--only "flat"] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import GenerationConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, machine, median
from matrix import CASES, Case, build, forwards, inputs

from lightning_gen import generate
from lightning_gen.decoding._sampler import Sampler
from lightning_gen.decoding.processors import build_logits_processors

TARGET = 1.3


def measure(case: Case, model: torch.nn.Module, repeats: int) -> dict[str, float]:
    """Median milliseconds of the four timed calls (see the module docstring) for ``case``."""
    ids, mask = inputs(case, model.config.vocab_size)
    options = dict(case.options, max_new_tokens=case.new, pad_token_id=0)
    options.pop("eos_token_id", None)  # where rows end (matrix.py's "frequent" token) moves no per-step cost
    tokens = generate(model, ids, attention_mask=mask, generator=torch.Generator().manual_seed(0), **options)
    steps = tokens.shape[1] - case.prompt
    upto = case.prompt + steps // 2  # scores from the middle of the call
    full = None if mask is None else torch.cat([mask, mask.new_ones(mask.shape[0], upto - case.prompt)], dim=1)
    with torch.no_grad():
        scores = model(tokens[:, :upto], attention_mask=full).logits[:, -1, :].float().contiguous()
    config = GenerationConfig(**options)
    sampler = Sampler(build_logits_processors(config, eos=None, prompt_ids=ids, attention_mask=mask,
                                              user_processors=None, device=ids.device))
    generator = torch.Generator().manual_seed(0)
    uniforms = torch.empty(scores.shape, dtype=torch.float64)
    k = config.top_k or 0

    def forward(_: int) -> None:
        with torch.no_grad():
            forwards(model, tokens, case.prompt, mask)

    runs = alternate({
        "forward": forward,
        "uniform": lambda _: uniforms.uniform_(generator=generator),
        "topk": lambda _: scores.topk(k + 1, dim=-1) if k else None,
        "step": lambda _: sampler.sample(tokens[:, :upto], scores.clone(), generator=generator),
    }, repeats=repeats)
    ms = {name: median(r.cpu) * 1e3 for name, r in runs.items()}
    ms["forward"] /= steps  # the prompt's call and one call per generated token but the last
    return ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="processors", help="the sampling rows of the matrix whose name contains this")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = [c for c in CASES if args.only in c.name and c.options.get("do_sample")]
    print(f"machine: {machine()}")
    print(f"{args.repeats} rounds taking turns; median CPU ms per decode step")
    print("| case | batch x vocab | forward | uniform | topk | floor ours / forwards | left under 1.3 | "
          "our step | our step beyond the floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    models: dict[str, torch.nn.Module] = {}
    for case in cases:
        model = models.get(case.model) or models.setdefault(case.model, build(case.model))
        ms = measure(case, model, args.repeats)
        floor = ms["uniform"] + ms["topk"]
        print(f"| {case.name} | {case.batch} x {model.config.vocab_size} | {ms['forward']:.2f} | {ms['uniform']:.2f} | "
              f"{ms['topk']:.2f} | {1 + floor / ms['forward']:.3f} | {(TARGET - 1) * ms['forward'] - floor:.2f} | "
              f"{ms['step']:.2f} | {ms['step'] - floor:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
