"""Train TinyLM with GenerationMonitor on 1 or 2 CPU processes; record samples and sampling forwards.

Usage: python ddp_monitor.py OUT_DIR DEVICES DISTRIBUTED
Run as a script because Lightning's "ddp" strategy re-launches the script for each extra process.
"""

import json
import os
import sys

import lightning.pytorch as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # tests/
from tiny import VOCAB, CharTokenizer, TinyLM, trainer  # noqa: E402

from lightning_gen import GenerationMonitor  # noqa: E402

EOS = VOCAB.index("\n")


class RankBiasedLM(TinyLM):
    """While sampling, rank 0's rows all end after 2 tokens; the other ranks' rows never end."""

    def __init__(self):
        super().__init__()
        self.tokenizer = CharTokenizer(eos=True)
        self.sampling_forwards = 0

    def forward(self, ids):
        logits = super().forward(ids)
        if not self.training:
            self.sampling_forwards += 1
            bias = torch.full_like(logits, 0.0)
            if self.trainer.global_rank == 0 and ids.shape[1] >= 4:
                bias[..., EOS] = 1e4
            else:
                bias[..., EOS] = -1e4
            logits = logits + bias
        return logits


def main(out_dir: str, devices: int, distributed: str) -> None:
    pl.seed_everything(0)
    prompts = ["ab", "hello", "x", "the end", "zz", "q"]
    monitor = GenerationMonitor(prompts, every_n_train_steps=2, generation={"max_new_tokens": 5, "do_sample": True},
                                batch_size=2, distributed=distributed, sample_on_train_end=False)
    model = RankBiasedLM() if distributed == "lockstep" else TinyLM()
    t = trainer(out_dir, [monitor], max_steps=4, strategy="ddp" if devices > 1 else "auto", devices=devices)
    t.fit(model)
    record = {"rank": t.global_rank, "sampling_forwards": getattr(model, "sampling_forwards", None)}
    with open(os.path.join(out_dir, f"rank{t.global_rank}.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
