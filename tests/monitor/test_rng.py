"""The round runs inside a fork of every global random stream: training never sees the monitor's draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tiny import TinyLM, trainer
from torch import nn

from lightning_gen import GenerationMonitor
from lightning_gen.monitor._rng import forked_rng


class GlobalRandomLM(TinyLM):
    """Draws from every global stream: MC dropout and noise at inference; training depends on all three streams
    too (torch's dropout and shuffling, and a loss scale from `random` and NumPy), so any stray draw shows."""

    def forward(self, ids):
        logits = super().forward(ids)
        if self.training:
            return logits
        noise = 0.01 * (random.random() + float(np.random.rand()))
        return nn.functional.dropout(logits, 0.2, training=True) + noise + 0.01 * torch.randn_like(logits)

    def training_step(self, batch, batch_idx):
        scale = 1.0 + 0.01 * random.random() + 0.01 * float(np.random.rand())
        return super().training_step(batch, batch_idx) * scale


def _train(tmp_path, callbacks):
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    model = GlobalRandomLM()
    trainer(tmp_path, callbacks, max_steps=6).fit(model)
    return [p.detach().clone() for p in model.parameters()], (torch.rand(1), random.random(), np.random.rand())


def test_training_is_bit_identical_with_a_model_that_draws_from_the_global_rng(tmp_path):
    without, streams_without = _train(tmp_path / "a", [])
    monitor = GenerationMonitor(["ab", "cd"], every_n_train_steps=2, generation={"max_new_tokens": 6, "do_sample": True})
    with_monitor, streams_with = _train(tmp_path / "b", [monitor])
    assert monitor.last_round_step == 6  # rounds (and the probe, and scoring) ran
    assert all(torch.equal(a, b) for a, b in zip(without, with_monitor, strict=True))
    assert streams_with == streams_without  # every stream is where it would have been


def test_forked_rng_restores_every_stream_even_after_an_error():
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    with pytest.raises(RuntimeError), forked_rng(torch.device("cpu")):
        torch.rand(10), random.random(), np.random.rand(3)
        raise RuntimeError("a failed round")
    assert torch.equal(torch.get_rng_state(), states[0])
    assert random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_forked_rng_restores_the_accelerator_stream():  # pragma: no cover - runs only where CUDA exists
    device = torch.device("cuda", torch.cuda.current_device())
    state = torch.cuda.get_rng_state(device)
    with forked_rng(device):
        torch.rand(10, device=device)
    assert torch.equal(torch.cuda.get_rng_state(device), state)
