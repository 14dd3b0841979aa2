"""Faults, precision, compiled and checkpointed models, memory: sampling never endangers the training run."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch
from tiny import CharTokenizer, TinyCacheLM, TinyLM, plan_for, text_events, trainer

from lightning_gen import GenerationMonitor
from lightning_gen.monitor.tokenized_prompts import encode_prompts
from lightning_gen.monitor.round import sample_round
from lightning_gen.text.samples import Prompt
from lightning_gen.text.tokenization import load_tokenizer

GEN = {"max_new_tokens": 5, "do_sample": True}


class NanLM(TinyLM):
    """NaN logits while sampling, from step ``after`` on (0: from the start, so the probe sees them)."""

    def __init__(self, after: int = 0) -> None:
        super().__init__()
        self.after = after

    def forward(self, ids):
        logits = super().forward(ids)
        broken = not self.training and self._trainer is not None and self.trainer.global_step >= self.after
        return logits * float("nan") if broken else logits


class RaisesLM(TinyLM):
    """The sampling forward raises from step ``after`` on (a fault that appears mid-run, e.g. a bad update)."""

    def __init__(self, after: int = 0) -> None:
        super().__init__()
        self.after = after

    def forward(self, ids):
        if not self.training and self.trainer.global_step >= self.after:
            raise RuntimeError("forward exploded")
        return super().forward(ids)


class BadDecode(CharTokenizer):
    broken = True

    def decode(self, ids):
        if self.broken:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return super().decode(ids)


class BreaksDecodeLM(TinyLM):
    """Its tokenizer's decode starts failing with the first training step."""

    def __init__(self) -> None:
        super().__init__()
        self.tokenizer = BadDecode()
        self.tokenizer.broken = False

    def on_train_batch_start(self, batch, batch_idx):
        self.tokenizer.broken = True


class FailingWriterLM(TinyLM):
    def on_train_start(self):
        def add_text(*args, **kwargs):
            raise OSError("disk full")

        self.logger.experiment.add_text = add_text


def _fit_expecting_warning(tmp_path, model, match, **monitor_kwargs):
    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN, **monitor_kwargs)
    t = trainer(tmp_path, [monitor], max_steps=4)
    with pytest.warns(UserWarning, match=match):
        t.fit(model)
    assert t.global_step == 4  # training reached max_steps
    return t


@pytest.mark.parametrize(
    ("make_model", "match"),
    [
        (lambda: RaisesLM(after=2), "RuntimeError: forward exploded"),
        (lambda: NanLM(after=2), "RuntimeError: .*(nan|inf)"),
        (BreaksDecodeLM, "UnicodeDecodeError"),
        (FailingWriterLM, "OSError: disk full"),
    ],
    ids=["forward-raises", "nan-logits", "decode-raises", "logger-raises"],
)
def test_fault_during_training_warns_names_the_cause_and_training_completes(tmp_path, make_model, match):
    _fit_expecting_warning(tmp_path, make_model(), match)


@pytest.mark.parametrize(
    ("make_model", "match"),
    [
        (RaisesLM, "RuntimeError: forward exploded"),
        (NanLM, "logits hold NaN or inf in eval mode, before training has started"),
        (lambda: _with_tokenizer(TinyLM(), BadDecode()), "UnicodeDecodeError"),
    ],
    ids=["forward-raises", "nan-logits", "decode-raises"],
)
def test_fault_present_from_the_start_is_an_error_before_step_1(tmp_path, make_model, match):
    """Such a fault would fail every round: the probe at the start of fit finds it, even with on_error="warn"."""
    from lightning_gen.monitor.probe import ProbeError

    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN)
    t = trainer(tmp_path, [monitor], max_steps=4)
    with pytest.raises(ProbeError, match=match):
        t.fit(make_model())
    assert t.global_step == 0


def _with_tokenizer(model, tokenizer):
    model.tokenizer = tokenizer
    return model


def test_keyboard_interrupt_is_never_swallowed(tmp_path):
    class Interrupting(TinyLM):
        def forward(self, ids):
            if not self.training and self.trainer.global_step > 0:  # a round, not the probe at fit start
                raise KeyboardInterrupt
            return super().forward(ids)

    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN, sample_on_train_start=False)
    t = trainer(tmp_path, [monitor], max_steps=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t.fit(Interrupting())
        except (KeyboardInterrupt, SystemExit):
            pass
    assert t.interrupted and t.global_step == 2  # Lightning's graceful shutdown ran; training stopped there
    assert not any("GenerationMonitor" in str(w.message) for w in caught)


def test_bf16_mixed_precision_samples_with_float32_processors(tmp_path):
    seen = []

    class Recording(TinyLM):
        def forward(self, ids):
            logits = super().forward(ids)
            if not self.training:
                seen.append(logits.dtype)
            return logits

    monitor = GenerationMonitor(["ab"], generation=GEN, sample_on_train_end=False)
    trainer(tmp_path, [monitor], max_steps=1, precision="bf16-mixed").fit(Recording())
    assert seen and set(seen) == {torch.bfloat16}  # the trainer's autocast was active while sampling
    assert "samples/prompt_00" in text_events(str(tmp_path / "tb" / "version_0"))


def test_compiled_module_is_sampled_through_its_original(tmp_path):
    class Compiled(TinyLM):
        def __init__(self):
            super().__init__()
            self.net = torch.compile(TinyLM(), backend="eager")

    model = Compiled()
    monitor = GenerationMonitor(["ab"], generation=GEN, model_attr="net", sample_on_train_end=False)
    trainer(tmp_path, [monitor], max_steps=1).fit(model)
    assert monitor._target.network.called is model.net._orig_mod


def test_gradient_checkpointing_is_off_while_sampling_and_restored(tmp_path):
    states = []

    class Checkpointed(TinyLM):
        def __init__(self):
            super().__init__()
            self.mlp.gradient_checkpointing = True

        def forward(self, ids):
            if not self.training:
                states.append(self.mlp.gradient_checkpointing)
            return super().forward(ids)

    model = Checkpointed()
    trainer(tmp_path, [GenerationMonitor(["ab"], generation=GEN)], max_steps=1).fit(model)
    assert states and not any(states)
    assert model.mlp.gradient_checkpointing is True


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def test_no_memory_growth_over_100_rounds_and_caches_freed():
    model = TinyCacheLM()
    tokenizer = load_tokenizer(CharTokenizer())
    encoded = encode_prompts([Prompt("ab"), Prompt("hello")], tokenizer, max_prompt_tokens=None)
    plan = plan_for(model, tokenizer, GEN)

    def one_round():
        sample_round(model, encoded, tokenizer, plan, seed=0)
        assert model.kv_cache is None  # the cache adapter freed it

    one_round()
    before = _live_tensors()
    for _ in range(100):
        one_round()
    assert _live_tensors() == before


class OutOfMemoryAtFirst(TinyLM):
    """The first sampling forward (the probe's) runs out of memory; later ones work (a transient fault)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[bool] = []  # filled in place: a round puts rebound attributes back

    def forward(self, ids):
        if not self.training and not self.failed:
            self.failed.append(True)
            raise torch.OutOfMemoryError("injected: out of memory")
        return super().forward(ids)


def test_transient_probe_failure_warns_and_training_starts_unless_on_error_raise(tmp_path):
    """Running out of memory is the one failure of the probe that may not come back: it warns, rounds go on."""
    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN)
    t = trainer(tmp_path / "warn", [monitor], max_steps=2)
    with pytest.warns(UserWarning, match="probe round failed with OutOfMemoryError"):
        t.fit(OutOfMemoryAtFirst())
    assert t.global_step == 2 and monitor.last_round_step == 2
    assert "samples/prompt_00" in text_events(str(tmp_path / "warn" / "tb" / "version_0"))
    strict = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN, on_error="raise")
    t = trainer(tmp_path / "raise", [strict], max_steps=2)
    with pytest.raises(torch.OutOfMemoryError):
        t.fit(OutOfMemoryAtFirst())
    assert t.global_step == 0
