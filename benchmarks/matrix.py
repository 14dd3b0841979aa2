"""Our `generate` against transformers' `generate` and against the model's forward calls alone, case by case.

Each row decodes one batch three ways side by side in one process: the three calls take turns at every forward
call of the model (`_common.interleave`), so that a slow spell of the machine falls on all three alike instead of
on whichever call it hit (called one after another, the same forward calls varied by 15 % from call to call here;
taking turns, a round's ratios vary by about 2 %). Times are medians of the rounds, ratios medians of each round's
own ratio. A row runs ``--repeats`` rounds, or more where a round is short: as many as fill ``--seconds`` (at most
25), since a call of a fraction of a second wanders by as much as a long one:

* ``ours``: `lightning_gen.generate` with ``generator=torch.Generator().manual_seed(s)``;
* ``HF``: ``model.generate`` after ``torch.manual_seed(s)``, the same options;
* ``forwards``: the forward calls HF's loop makes (the prompt with a fresh `DynamicCache`, then one token at a
  time, the same position ids and mask, ``logits_to_keep=1``) with HF's tokens given, and nothing else: what any
  loop must spend on the model.

It prints ours / HF, ours / forwards (the decoding's own cost on top of the model; HF / forwards beside it) and
whether ours gave HF's tokens, round for round; on stderr, after each row, the routes our steps took, and per call
(medians) the minor page faults, the pages the allocator mapped afresh, and the CPU time outside the model's
forward calls: the loop's own cost, which the forwards' noise does not blur. Targets (issue 23): ours / HF <= 1.0 in
every row of both kinds of models below, ours / forwards <= 1.3 in every greedy or top-k row, tokens identical in
every round. ``benchmarks/README.md`` has the method, the table and what each sampling shortcut gains.

The models are transformers models built from configs with random weights, of two kinds. *Peaked*, with
``initializer_range=0.5``: varied distributions with a few likely tokens, as a trained model's.

* ``gpt2``: 2 layers of GPT-2 small's width (768, 12 heads) over GPT-2's 50257 tokens;
* ``llama``: 2 layers of width 768 (GQA 12/4 heads) over Llama 3's 128256 tokens;
* ``char``: the example's GPT shape (4 layers, width 128, 4 heads) over its 104 characters.

*Flat*, with their configs' own initialisation (``initializer_range=0.02``): near-uniform distributions, as at the
start of pretraining, when a monitor samples most. The sampling shortcuts must gain on both kinds.

* ``gpt2 flat``: GPT-2 4 x 256 over 50257 tokens (``benchmarks/generate_vs_hf.py``'s model);
* ``llama flat``: Llama 2 x 256 (GQA 4/2 heads) over 128256 tokens.

Few layers keep a run of the whole matrix within the hour on two cores. The peaked models keep a real model's width
because the sampling cost grows with batch x vocabulary and the output layer's cost with batch x vocabulary x
width: over a narrower layer every per-token cost looks larger than it would on any model worth sampling from. The
flat models are the narrow ones, where the sampling is a larger share of each step.

Run::

    python benchmarks/matrix.py [--repeats 3] [--seconds 20] [--only top-p] [--quick] [--without top-k]

``--quick`` runs four small rows with one round each (a smoke run, seconds); ``--without`` hands one sampling
shortcut back to HF's code, to measure what it gains.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleave, machine, median, timed  # noqa: E402

from lightning_gen import generate  # noqa: E402
from lightning_gen.decoding import _draws as draws  # noqa: E402
from lightning_gen.decoding import _sampler as sampler  # noqa: E402
from lightning_gen.decoding import _warpers as warpers  # noqa: E402

PAD = 0
MAX_ROUNDS = 25
# `--without NAME` hands one shortcut back to HF's code (the function then answers "cannot promise"), to measure
# what it gains: the same rows with and without it. NAME: (module, function, what it answers).
WITHOUT = {
    "draw": (draws, "draw", None),  # multinomial draws
    "top-p": (warpers, "top_p", None),  # HF's top-p sorts values and indices
    "top-k": (warpers, "top_k", None),  # HF's top-k, and every processor after it over the whole rows
}


@dataclass(frozen=True)
class Case:
    """One row: a model, a batch, how many new tokens and the generation options."""

    name: str
    model: str
    batch: int = 8
    new: int = 32
    options: dict[str, Any] = field(default_factory=dict)
    left_padded: bool = False
    prompt: int = 16


SAMPLE = {"do_sample": True}
NO_TOP_K = {"top_k": 0}  # else the generation config's default top-k 50 runs first and every row is a top-k row
CHAIN5 = {"do_sample": True, "repetition_penalty": 1.2, "temperature": 0.8, "top_k": 50, "top_p": 0.9, "min_p": 0.05}
CHAIN4 = {key: value for key, value in CHAIN5.items() if key != "min_p"}  # benchmarks/generate_vs_hf.py's
CASES = [
    Case("greedy", "gpt2", options={"do_sample": False}),
    Case("temperature 0.8", "gpt2", options={**SAMPLE, **NO_TOP_K, "temperature": 0.8}),
    Case("top-k 50", "gpt2", options={**SAMPLE, "top_k": 50}),
    Case("top-p 0.9", "gpt2", options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}),
    Case("min-p 0.1", "gpt2", options={**SAMPLE, **NO_TOP_K, "min_p": 0.1}),
    Case("typical 0.9", "gpt2", options={**SAMPLE, **NO_TOP_K, "typical_p": 0.9}),
    Case("repetition penalty 1.3", "gpt2", options={"do_sample": False, "repetition_penalty": 1.3}),
    Case("no-repeat-ngram 3", "gpt2", options={"do_sample": False, "no_repeat_ngram_size": 3}),
    Case("5 processors", "gpt2", options=CHAIN5),
    Case("num_return_sequences 4", "gpt2", batch=2, options={**SAMPLE, "top_k": 50, "num_return_sequences": 4}),
    Case("batch 1 top-p", "gpt2", batch=1, options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}),
    Case("batch 32 5 processors", "gpt2", batch=32, new=16, options=CHAIN5),
    Case("left-padded top-p", "gpt2", options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}, left_padded=True),
    Case("llama greedy", "llama", batch=4, options={"do_sample": False}),
    Case("llama top-p 0.9", "llama", batch=4, options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}),
    Case("llama 5 processors", "llama", batch=4, options=CHAIN5),
    Case("char greedy 32", "char", new=32, options={"do_sample": False}),
    Case("char top-k 128", "char", new=128, options={**SAMPLE, "temperature": 0.8, "top_k": 40}),
    Case("char top-p 256", "char", new=256, options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}),
    Case("char batch 32 top-k", "char", batch=32, new=128, options={**SAMPLE, "top_k": 40}),
    Case("char left-padded 5 processors", "char", new=128, options=CHAIN5, left_padded=True),
    Case("char EOS", "char", new=128, options={**SAMPLE, "top_k": 40, "eos_token_id": "frequent"}),
    # Flat logits: 8 x 48 new tokens unless noted.
    Case("flat greedy", "gpt2 flat", new=48, options={"do_sample": False}),
    Case("flat temperature 0.8", "gpt2 flat", new=48, options={**SAMPLE, **NO_TOP_K, "temperature": 0.8}),
    Case("flat top-k 50", "gpt2 flat", new=48, options={**SAMPLE, "top_k": 50}),
    Case("flat top-p 0.9", "gpt2 flat", new=48, options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}),
    Case("flat min-p 0.05", "gpt2 flat", new=48, options={**SAMPLE, **NO_TOP_K, "min_p": 0.05}),
    Case("flat typical 0.9", "gpt2 flat", new=48, options={**SAMPLE, **NO_TOP_K, "typical_p": 0.9}),
    Case("flat repetition penalty 1.3", "gpt2 flat", new=48, options={"do_sample": False, "repetition_penalty": 1.3}),
    Case("flat 5 processors", "gpt2 flat", new=48, options=CHAIN5),
    Case("flat batch 32 4 processors", "gpt2 flat", batch=32, new=16, options=CHAIN4),
    Case("flat llama greedy", "llama flat", batch=4, new=48, options={"do_sample": False}),
    Case("flat llama top-k 50", "llama flat", batch=4, new=48, options={**SAMPLE, "top_k": 50}),
    Case("flat llama top-p 0.9", "llama flat", batch=4, new=48, options={**SAMPLE, **NO_TOP_K, "top_p": 0.9}),
    Case("flat llama 5 processors", "llama flat", batch=4, new=48, options=CHAIN5),
]
QUICK = [
    Case("greedy", "tiny", batch=2, new=8, options={"do_sample": False}),
    Case("top-p 0.9", "tiny", batch=2, new=8, options={**SAMPLE, "top_p": 0.9}),
    Case("left-padded 5 processors", "tiny", batch=2, new=8, options=CHAIN5, left_padded=True),
    Case("EOS", "tiny", batch=2, new=8, options={**SAMPLE, "top_k": 40, "eos_token_id": "frequent"}),
]


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(pad_token_id=PAD, eos_token_id=None, bos_token_id=None)
    peaked = dict(initializer_range=0.5, **common)
    if name == "gpt2":
        config = GPT2Config(n_layer=2, n_head=12, n_embd=768, vocab_size=50257, n_positions=512, **peaked)
    elif name == "char":
        config = GPT2Config(n_layer=4, n_head=4, n_embd=128, vocab_size=104, n_positions=512, **peaked)
    elif name == "tiny":
        config = GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=4500, n_positions=64, **peaked)
    elif name == "gpt2 flat":  # the config's own initializer_range
        config = GPT2Config(n_layer=4, n_head=4, n_embd=256, vocab_size=50257, n_positions=512, **common)
    elif name == "llama":
        config = LlamaConfig(num_hidden_layers=2, hidden_size=768, intermediate_size=2048, num_attention_heads=12,
                             num_key_value_heads=4, vocab_size=128256, max_position_embeddings=512, **peaked)
        return LlamaForCausalLM(config).eval()
    elif name == "llama flat":
        config = LlamaConfig(num_hidden_layers=2, hidden_size=256, intermediate_size=688, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=128256, max_position_embeddings=512, **common)
        return LlamaForCausalLM(config).eval()
    else:
        raise ValueError(f"unknown model {name!r}")
    return GPT2LMHeadModel(config).eval()


def inputs(case: Case, vocab: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompts `(B, P)` of ids >= 1, and for a left-padded batch a mask with rows padded by 0 to P // 2 tokens."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab, (case.batch, case.prompt), generator=g)
    if not case.left_padded:
        return ids, None
    pads = torch.arange(case.batch) % (case.prompt // 2 + 1)  # row b has b mod (P/2 + 1) pads
    mask = (torch.arange(case.prompt)[None, :] >= pads[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


def forwards(model: torch.nn.Module, tokens: torch.Tensor, prompt: int, mask: torch.Tensor | None) -> torch.Tensor:
    """The forward calls HF's loop makes for ``tokens`` `(B, L)` whose first ``prompt`` are the prompt."""
    batch, length = tokens.shape
    full = None if mask is None else torch.cat([mask, mask.new_ones(batch, length - prompt)], dim=1)
    if full is None:
        positions = torch.arange(length).unsqueeze(0)
    else:
        positions = (full.cumsum(-1) - 1).masked_fill(full == 0, 0)
    cache = DynamicCache(config=model.config)
    # transformers renamed `past_key_values` to `cache` during 5.x
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def call(start: int, end: int) -> torch.Tensor:
        extra = {key: cache} if full is None else {key: cache, "attention_mask": full[:, :end]}
        return model(input_ids=tokens[:, start:end], position_ids=positions[:, start:end], use_cache=True,
                     logits_to_keep=1, **extra).logits

    logits = call(0, prompt)
    for t in range(prompt, length - 1):
        logits = None  # as HF's loop, which keeps only a copy of the last position's logits
        logits = call(t, t + 1)
    return logits


def run_case(case: Case, model: torch.nn.Module, repeats: int, seconds: float = 0.0) -> dict[str, Any]:
    vocab = model.config.vocab_size
    ids, mask = inputs(case, vocab)
    options = dict(case.options, max_new_tokens=case.new, pad_token_id=PAD)
    if options.get("eos_token_id") == "frequent":  # the token the model writes most: rows end at varied steps
        torch.manual_seed(0)
        with torch.no_grad():
            probe = model.generate(ids, attention_mask=mask, **{**options, "eos_token_id": None})
        options["eos_token_id"] = int(probe[:, case.prompt:].flatten().bincount().argmax())
    repeat = options.get("num_return_sequences", 1)
    fwd_mask = None if mask is None else mask.repeat_interleave(repeat, dim=0)
    def hf(seed: int) -> torch.Tensor:
        torch.manual_seed(max(seed, 0))
        with torch.no_grad():
            return model.generate(ids, attention_mask=mask if mask is not None else torch.ones_like(ids), **options)

    def ours(seed: int) -> torch.Tensor:
        return generate(model, ids, attention_mask=mask, generator=torch.Generator().manual_seed(max(seed, 0)),
                        **options)

    # Each round's forward calls are for that round's tokens (with EOS their number varies with the seed); rounds
    # that run `alone` first need them beforehand: ours, untimed (the table says whether they are HF's). The first
    # call also tells how long a round (three such calls) takes.
    _, first, out = timed(lambda: ours(0))
    tokens = {0: out}
    repeats = max(repeats, min(MAX_ROUNDS, math.ceil(seconds / (3 * first)))) if seconds > 0 else repeats
    tokens.update({seed: ours(seed) for seed in range(1, repeats)})

    def alone(seed: int) -> torch.Tensor:
        with torch.no_grad():
            return forwards(model, tokens[max(seed, 0)], case.prompt, fwd_mask)

    sampler.stats.reset()
    runs = interleave({"hf": hf, "ours": ours, "forwards": alone}, model, repeats=repeats)
    same = sum(torch.equal(a, b) for a, b in zip(runs["hf"].outputs, runs["ours"].outputs))
    wall = {name: median(r.wall) for name, r in runs.items()}
    cpu = {name: median(r.cpu) for name, r in runs.items()}
    # Ratios are medians of each round's own ratio: the three calls of a round run step by step together, so a slow
    # spell of the machine (another tenant, a frequency step) moves both sides of a ratio instead of one median.
    def paired(a: str, b: str, kind: str = "cpu") -> float:
        return median([x / y for x, y in zip(getattr(runs[a], kind), getattr(runs[b], kind))])

    ratio = {f"{a}/{b}": (paired(a, b), paired(a, b, "wall")) for a, b in
             (("ours", "hf"), ("ours", "forwards"), ("hf", "forwards"))}
    steps = median([out.shape[1] - case.prompt for out in runs["hf"].outputs])
    return {"case": case, "wall": wall, "cpu": cpu, "ratio": ratio, "same": same, "repeats": repeats, "steps": steps,
            "stats": str(sampler.stats).removeprefix("SamplerStats"),
            "faults": {name: median(r.faults) for name, r in runs.items()},
            "outside": {name: median(r.outside) for name, r in runs.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="rows whose rounds are short run as many rounds as fill this many seconds (at most 25)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="run the rows whose name contains this text")
    parser.add_argument("--quick", action="store_true", help="four small rows, one round each (a smoke run)")
    parser.add_argument("--without", choices=sorted(WITHOUT), action="append", default=[],
                        help="hand this shortcut back to HF's code, to measure what it gains (repeatable)")
    args = parser.parse_args(argv)
    for without in args.without:
        module, name, answer = WITHOUT[without]
        setattr(module, name, lambda *_args, _answer=answer, **_kwargs: _answer)
    torch.set_num_threads(args.threads)
    cases = QUICK if args.quick else [c for c in CASES if args.only is None or args.only in c.name]
    repeats = 1 if args.quick else args.repeats
    print(f"machine: {machine()}" + "".join(f" | without {without}" for without in args.without))
    print(f"{repeats} rounds after one warm-up, the three calls taking turns at every forward call: median CPU ms of "
          "each call's thread; ratios are medians of each round's CPU-time ratio (in parentheses: of the time each "
          "call held the core)")
    print("| case | model | batch | new | ours ms | HF ms | forwards ms | ours / HF | ours / forwards | "
          "HF / forwards | tokens identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    models: dict[str, torch.nn.Module] = {}
    failures = 0
    for case in cases:
        model = models.get(case.model) or models.setdefault(case.model, build(case.model))
        row = run_case(case, model, repeats, 0.0 if args.quick else args.seconds)
        c, r = row["cpu"], row["ratio"]
        failures += row["same"] != row["repeats"]
        print(f"| {case.name} | {case.model} | {case.batch} | {row['steps']:g} | {c['ours'] * 1e3:.0f} | "
              f"{c['hf'] * 1e3:.0f} | {c['forwards'] * 1e3:.0f} | {r['ours/hf'][0]:.3f} ({r['ours/hf'][1]:.3f}) | "
              f"{r['ours/forwards'][0]:.3f} ({r['ours/forwards'][1]:.3f}) | {r['hf/forwards'][0]:.3f} | "
              f"{row['same']}/{row['repeats']} |", flush=True)
        faults = ", ".join(f"{name} {count:g}" for name, count in row["faults"].items())
        outside = ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in row["outside"].items())
        print(f"<!-- routes {row['stats']}; per call: minor page faults {faults}; CPU ms outside the forward calls "
              f"{outside} -->", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
