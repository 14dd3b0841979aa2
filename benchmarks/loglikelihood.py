"""Log-likelihood requests per second against lm-eval's ``HFLM``, and one evaluation against one training step.

``throughput``: a GPT-2 of the example's size (4 layers, 128 wide, 512 positions) with a byte-level BPE tokenizer
of 2048 tokens trained here on the example's corpus scores one of the example's tasks (``next_sentence`` of
`examples/held_out_tasks.py`: 97 questions, 4 choices each) with ``--fewshot`` solved examples before each
question, as CORE asks its questions.
The same 388 requests go, alternating within one process, through:

* ``ours``: `lightning_gen.loglikelihood` with its defaults (rows up to 2048 padded tokens, the choices of a
  question sharing their context through the KV cache);
* ``ours bs=B``: ``batch_size=B``; ``ours bs=B whole``: the same without shared prefixes;
* ``HFLM bs=1``: lm-eval's default batch size; ``HFLM bs=B``: the same batch size as ours; both with
  ``logits_cache=False`` (exact); ``HFLM bs=B cache``: its default ``logits_cache=True``.

Each figure is requests per second (median over ``--repeats`` alternating rounds, wall and process CPU time), and
the largest difference from ``HFLM(logits_cache=False)`` is printed beside it.

``example``: the example's ``CharGPT`` (4 layers, 128 wide, 128 characters, batch 32, its learning-rate schedule)
trains for ``--steps`` steps with a real `Trainer`; every ``--every`` steps a callback scores the example's tasks
(`examples/tasks/tasks.yaml`: two multiple-choice tasks, chance 0.25, and the held-out text in bits per byte) with
`score_tasks` (what ``TaskMonitor`` will do each round) and times it. Printed: the metrics per step, the median
training step, the median evaluation, and their ratio.

Run::

    python benchmarks/loglikelihood.py [throughput|example|both] [--repeats 3] [--threads 1] [--steps 600]
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parent.parent
TASKS = ROOT / "examples" / "tasks"  # made by examples/held_out_tasks.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
from _common import alternate, machine, median  # noqa: E402
from data import CharDataModule, default_corpus  # noqa: E402  (examples/data.py)
from pretrain import CharGPT  # noqa: E402  (examples/pretrain.py)

from lightning_gen import loglikelihood  # noqa: E402
from lightning_gen.evaluation.tasks import evaluation_metrics, load_tasks, score_tasks  # noqa: E402


def _bpe(vocab_size: int = 2048):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(default_corpus().split("\n\n"), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def throughput(args: argparse.Namespace) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _bpe()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=4, n_head=4, n_embd=128, vocab_size=len(tokenizer), n_positions=512,
                                       bos_token_id=None, eos_token_id=None)).eval()
    spec = {"name": "next_sentence", "path": TASKS / "next_sentence.jsonl", "type": "multiple_choice",
            "num_fewshot": args.fewshot}
    [task] = load_tasks([spec], tokenizer=tokenizer, context_length=512)
    requests = [request for example in task.sources for request in example.requests]
    lengths = [(len(c), len(t)) for item in task.items for c, t in item]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    b = args.batch_size
    hflm = {cache: {bs: HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), logits_cache=cache, device="cpu",
                             batch_size=bs) for bs in (1, b)} for cache in (False, True)}
    runs = {
        "ours": lambda r: loglikelihood(model, requests, tokenizer=tokenizer),
        f"ours bs={b}": lambda r: loglikelihood(model, requests, tokenizer=tokenizer, batch_size=b),
        "HFLM bs=1": lambda r: hflm[False][1].loglikelihood(instances, disable_tqdm=True),
        f"HFLM bs={b}": lambda r: hflm[False][b].loglikelihood(instances, disable_tqdm=True),
        f"HFLM bs={b} cache": lambda r: hflm[True][b].loglikelihood(instances, disable_tqdm=True),
    }
    from lightning_gen.decoding.likelihood import loglikelihood_tokens
    pairs = [pair for item in task.items for pair in item]
    runs[f"ours bs={b} whole"] = lambda r: loglikelihood_tokens(model, pairs, batch_size=b, share_prefixes=False)
    results = alternate(runs, args.repeats)
    exact = results[f"HFLM bs={b}"].outputs[-1]
    print(f"machine: {machine()}")
    print(f"model: GPT-2 4x128, 512 positions, BPE vocabulary {len(tokenizer)}; task: next_sentence, "
          f"{len(task)} questions x 4 choices, {args.fewshot}-shot: {len(requests)} requests, context tokens "
          f"median {median([c for c, _ in lengths]):.0f} (max {max(c for c, _ in lengths)}), continuation tokens "
          f"median {median([t for _, t in lengths]):.0f}; {args.repeats} alternating rounds")
    base = median(results["HFLM bs=1"].wall)
    for name, run in results.items():
        wall, cpu = median(run.wall), median(run.cpu)
        differs = max(abs(a[0] - e[0]) for a, e in zip(run.outputs[-1], exact))
        greedy = sum(a[1] != e[1] for a, e in zip(run.outputs[-1], exact))
        print(f"{name:<18} {len(requests) / wall:8.1f} req/s wall ({len(requests) / cpu:8.1f} cpu)  "
              f"x{base / wall:5.2f} vs HFLM bs=1   max |diff| {differs:.1e}, greedy differs {greedy}")


class _Evaluate(pl.Callback):
    """Scores the tasks every ``every`` steps (before the step's batch) and at the end, and times every training
    step and every evaluation: wall and process CPU seconds."""

    def __init__(self, tasks, every: int) -> None:
        self.tasks, self.every = tasks, every
        self.curve: list[tuple[int, dict[str, float], float, float]] = []
        self.steps: list[tuple[float, float]] = []

    def _evaluate(self, trainer, module) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        scores = score_tasks(module.model, self.tasks, context_length=module.model.block_size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.curve.append((trainer.global_step, evaluation_metrics(self.tasks, scores), wall, cpu))

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self._evaluate(trainer, module)
        self.steps.append((time.perf_counter(), time.process_time()))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        wall, cpu = self.steps[-1]
        self.steps[-1] = (time.perf_counter() - wall, time.process_time() - cpu)

    def on_train_end(self, trainer, module) -> None:
        self._evaluate(trainer, module)


def example(args: argparse.Namespace) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    datamodule = CharDataModule(block_size=128, batch_size=32)
    tasks = load_tasks(TASKS / "tasks.yaml", tokenizer=datamodule.tokenizer, context_length=128)
    pl.seed_everything(1234, verbose=False)
    module = CharGPT(vocab_size=datamodule.vocab_size, block_size=128, n_layer=4, n_head=4, n_embd=128,
                     dropout=0.0, learning_rate=3e-3, weight_decay=0.1, warmup_steps=50)
    callback = _Evaluate(tasks, args.every)
    with tempfile.TemporaryDirectory() as folder:
        trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, limit_val_batches=0,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             gradient_clip_val=1.0, logger=TensorBoardLogger(folder, name="bench"),
                             callbacks=[callback])
        trainer.fit(module, datamodule=datamodule)
    requests = sum(len(item) for task in tasks for item in task.items)
    print(f"machine: {machine()}")
    print(f"example: CharGPT 4x128, vocab {datamodule.vocab_size}, batch 32 x 128 characters, {args.steps} steps; "
          f"tasks: " + ", ".join(f"{task.name} ({len(task)} items)" for task in tasks) + f", {requests} requests")
    for step, metrics, wall, cpu in callback.curve:
        shown = "  ".join(f"{name} {value:.3f}" for name, value in metrics.items() if not name.endswith("centered"))
        print(f"step {step:5d}: {shown}   ({wall:.2f} s)")
    for i, kind in enumerate(("wall", "CPU")):
        step = statistics.median(times[i] for times in callback.steps[5:])
        evaluation = statistics.median(entry[2 + i] for entry in callback.curve[1:])
        print(f"{kind}: one training step {step * 1e3:.0f} ms (median); one evaluation ({requests} requests) "
              f"{evaluation:.2f} s (median) = {evaluation / step:.1f} training steps")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", nargs="?", choices=["throughput", "example", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fewshot", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    if args.part in ("throughput", "both"):
        throughput(args)
    if args.part in ("example", "both"):
        example(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
