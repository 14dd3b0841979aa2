"""`softmax_at`: the softmax of rows that are -inf outside a few candidates, from the candidates alone, bit for bit."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from lightning_gen.decoding import _compact as compact


def rows(seed: int, vocab: int, k: int, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` candidates per row at random positions, with scales from flat to peaked and some -inf among them."""
    g = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.randperm(vocab, generator=g)[:k] for _ in range(batch)])
    values = torch.randn(batch, k, generator=g) * [0.05, 1.0, 8.0, 40.0][seed % 4]
    if k > 2:
        values[seed % batch, 1::3] = -math.inf  # what a top-p or a min-p removed
    return values, indices


def whole(values: torch.Tensor, indices: torch.Tensor, vocab: int) -> torch.Tensor:
    return compact.materialize(values, indices, vocab).softmax(dim=-1).gather(1, indices)


def test_the_premise_holds_on_this_torch():
    assert compact.compaction_exact()


@pytest.mark.parametrize("vocab", [4097, 50257, 128256])
def test_candidates_anywhere_give_the_whole_rows_bits(vocab):
    for seed in range(40):
        values, indices = rows(seed, vocab, k=[1, 2, 7, 50][seed % 4])
        assert torch.equal(compact.softmax_at(values, indices, vocab), whole(values, indices, vocab)), seed


def test_candidates_side_by_side_sharing_residues_and_at_both_ends():
    vocab = 50257
    indices = torch.tensor([[0, 1, 2, 3, 4, 5], [64, 128, 192, 256, 320, vocab - 1], [63, 64, 127, 128, 50000, 50001]])
    values = torch.randn(3, 6, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(compact.softmax_at(values, indices, vocab), whole(values, indices, vocab))
    tail = torch.arange(vocab - 50, vocab).expand(2, 50)  # a sorted row's end, as top-p after a top-k reads it
    values = torch.randn(2, 50, generator=torch.Generator().manual_seed(1)).sort(dim=-1).values
    assert torch.equal(compact.softmax_at(values, tail, vocab), whole(values, tail, vocab))


def test_without_the_premise_the_whole_rows_are_taken(monkeypatch):
    values, indices = rows(3, 50257, k=50)
    monkeypatch.setattr(compact, "_compact_softmax", None)  # it must not be called
    monkeypatch.setattr(compact, "compaction_exact", lambda: False)
    assert torch.equal(compact.softmax_at(values, indices, 50257), whole(values, indices, 50257))
    monkeypatch.setattr(compact, "compaction_exact", lambda: True)
    values, indices = rows(3, 3200, k=50)  # rows of at most 64 k entries: the compact ones would be no shorter
    assert torch.equal(compact.softmax_at(values, indices, 3200), whole(values, indices, 3200))


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_the_premise_holds_at_every_vector_width(capability):
    """torch's CPU kernels are built for several vector widths (8 or 16 floats), chosen at start-up."""
    code = ("import torch; from lightning_gen.decoding import _compact as c; "
            "print(torch.backends.cpu.get_cpu_capability(), c.compaction_exact())")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [capability.upper(), "True"]
