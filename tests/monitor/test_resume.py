"""Exact resume: an interrupted run and its resume sample the steps of the uninterrupted run, none twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny import TinyLM, trainer

from lightning_gen import GenerationMonitor

GEN = {"max_new_tokens": 3, "do_sample": True}


class Recording(GenerationMonitor):
    """Records the step of every round it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(["ab"], generation=GEN, console="off", *args, **kwargs)
        self.steps: list[int] = []

    def run_now(self, trainer, step):
        self.steps.append(step)
        return super().run_now(trainer, step)


class CrashesAt(TinyLM):
    """Raises in the training step that would make global step ``step`` (a crash after the last checkpoint).

    Steps trained after the last checkpoint are trained again by the resume, and so are their rounds: the cases
    below crash right after a checkpoint.
    """

    def __init__(self, step: int | None = None) -> None:
        super().__init__()
        self.crash_step = step

    def training_step(self, batch, batch_idx):
        if self.crash_step is not None and self.trainer.global_step + 1 == self.crash_step:
            raise RuntimeError("node lost")
        return super().training_step(batch, batch_idx)


def _fit(tmp_path, monitor, *, max_steps, ckpt_every=None, ckpt_path=None, crash=None):
    callbacks = [monitor]
    if ckpt_every:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=ckpt_every, save_top_k=-1,
                                         filename="{step}"))
    t = trainer(tmp_path, callbacks, max_steps=max_steps, enable_checkpointing=bool(ckpt_every))
    torch.manual_seed(0)
    if crash is None:
        t.fit(CrashesAt(), ckpt_path=ckpt_path)
    else:
        with pytest.raises(RuntimeError, match="node lost"):
            t.fit(CrashesAt(crash))
    return t


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    monitor = Recording(every_n_train_steps=2)
    _fit(tmp_path_factory.mktemp("full"), monitor, max_steps=10)
    assert monitor.steps == [0, 2, 4, 6, 8, 10]
    return monitor.steps


@pytest.mark.parametrize(
    ("ckpt_every", "stop", "crash", "resume_from"),
    [
        (1, 7, 8, "step=7.ckpt"),  # a crash after a checkpoint at an unsampled step
        (4, 6, 5, "step=4.ckpt"),  # a crash just after a checkpoint at a sampled step
        (3, 6, None, "step=6.ckpt"),  # a clean stop (end-of-training round) and a resume from its last checkpoint
    ],
    ids=["crash-after-checkpoint", "checkpoint-at-sampled-step", "clean-stop"],
)
def test_union_of_interrupted_and_resumed_rounds_is_the_uninterrupted_run(tmp_path, uninterrupted, ckpt_every, stop,
                                                                          crash, resume_from):
    first = Recording(every_n_train_steps=2)
    _fit(tmp_path / "a", first, max_steps=stop if crash is None else 10, ckpt_every=ckpt_every, crash=crash)
    resumed = Recording(every_n_train_steps=2)
    _fit(tmp_path / "b", resumed, max_steps=10, ckpt_path=tmp_path / "a" / "ckpt" / resume_from)
    assert sorted(first.steps + resumed.steps) == uninterrupted  # no step twice, none missing
    assert 0 not in resumed.steps  # the baseline is step 0's, never a resume's


def test_end_round_of_a_stopped_run_is_not_repeated_by_its_resume(tmp_path):
    """The checkpoint of the last step is written before the end-of-training round, so it cannot know of it."""
    first = Recording(every_n_train_steps=4)
    _fit(tmp_path / "a", first, max_steps=6, ckpt_every=6)
    assert first.steps == [0, 4, 6]  # 6: the end of training
    resumed = Recording(every_n_train_steps=4)
    _fit(tmp_path / "b", resumed, max_steps=10, ckpt_path=tmp_path / "a" / "ckpt" / "step=6.ckpt")
    assert resumed.steps == [8, 10]


def test_train_time_interval_resumes_with_the_elapsed_time_of_the_checkpoint(tmp_path):
    interval = timedelta(hours=1)
    first = Recording(train_time_interval=interval, sample_on_train_end=False)
    _fit(tmp_path / "a", first, max_steps=2, ckpt_every=2)
    path = tmp_path / "a" / "ckpt" / "step=2.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    state = checkpoint["callbacks"][first.state_key]
    assert 0 < state["elapsed_since_round"] < 600  # the seconds since the baseline round, saved
    # As if the first run had trained for almost an hour since its last round: the resume's first step is due.
    state["elapsed_since_round"] = interval.total_seconds() - 1e-3
    torch.save(checkpoint, path)
    resumed = Recording(train_time_interval=interval, sample_on_train_end=False)
    _fit(tmp_path / "b", resumed, max_steps=4, ckpt_path=path)
    assert resumed.steps == [3]  # due at once, then an hour away again
