"""GenerationMonitor with a real Trainer, a tiny model and TensorBoard event files read back."""

from __future__ import annotations

import html
import json
import re
import warnings
from datetime import timedelta

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from tensorboard.plugins.text.text_plugin import text_array_to_html
from tiny import VOCAB, CharTokenizer, TinyCacheLM, TinyLM, text_events, trainer
from transformers import LogitsProcessor

from lightning_gen import GenerationMonitor, PlainAdapter

GEN = {"max_new_tokens": 6, "do_sample": True}


def shown(markdown: str) -> str:
    """What a TensorBoard reader sees for a stored text: rendered by TensorBoard's own pipeline, tags stripped."""
    rendered = text_array_to_html(np.array(markdown), enable_markdown=True)
    rendered = re.sub(r"<br\s*/?>", "\n", rendered)
    return html.unescape(re.sub(r"</?(p|strong|em)>", "", rendered)).replace("\xa0", " ")


def run(tmp_path, monitor, model=None, **kwargs):
    t = trainer(tmp_path, [monitor], **kwargs)
    t.fit(model or TinyLM())
    return t, text_events(t.logger.log_dir)


def test_samples_at_scheduled_steps_including_first_and_last(tmp_path):
    prompts = ["ab", "hello", "x"]
    t, events = run(tmp_path, GenerationMonitor(prompts, every_n_train_steps=3, generation=GEN), max_steps=7)
    assert sorted(events) == ["samples/all", "samples/prompt_00", "samples/prompt_01", "samples/prompt_02"]
    for tag in events:
        assert sorted(events[tag]) == [0, 3, 6, 7]
    for i, prompt in enumerate(prompts):
        assert shown(events[f"samples/prompt_{i:02d}"][3]).startswith(prompt)


def test_text_is_shown_verbatim(tmp_path):
    hostile = "<eos>|#*`_\n  a"
    _, events = run(tmp_path, GenerationMonitor([hostile], generation=GEN), max_steps=1)
    text = shown(events["samples/prompt_00"][0])
    assert text.startswith(hostile)
    assert len(text) == len(hostile) + GEN["max_new_tokens"]
    assert all(c in VOCAB for c in text)
    table = shown(events["samples/all"][0])
    assert "<eos>|#*`_" in table


def test_prompts_from_txt_and_jsonl_with_reference(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("first\n\nsecond\n")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prompt": "abc", "reference": "def"}) + "\n" + json.dumps({"prompt": "x"}) + "\n")
    _, events = run(tmp_path / "a", GenerationMonitor(str(txt), generation=GEN), max_steps=1)
    assert shown(events["samples/prompt_01"][0]).startswith("second")
    _, events = run(tmp_path / "b", GenerationMonitor(str(jsonl), generation=GEN), max_steps=1)
    assert "reference: def" in shown(events["samples/prompt_00"][0])
    assert "reference" in shown(events["samples/all"][0])


def _weights_after_training(tmp_path, callbacks):
    torch.manual_seed(123)
    model = TinyLM(dropout=0.3)
    t = trainer(tmp_path, callbacks, max_steps=8, deterministic=True)
    t.fit(model)
    return [p.detach().clone() for p in model.parameters()]


def test_training_is_bit_identical_with_and_without_monitor(tmp_path):
    without = _weights_after_training(tmp_path / "a", [])
    monitor = GenerationMonitor(["ab", "cd"], every_n_train_steps=2, generation={**GEN, "top_k": 5})
    with_monitor = _weights_after_training(tmp_path / "b", [monitor])
    assert monitor.last_round_step == 8
    assert all(torch.equal(a, b) for a, b in zip(without, with_monitor, strict=True))


class ModeRecorder(TinyLM):
    def forward(self, ids):
        self.modes_seen.append([m.training for m in self.modules()])
        return super().forward(ids)


def test_eval_during_sampling_and_every_module_mode_restored(tmp_path):
    model = ModeRecorder()
    model.modes_seen = []
    model.mlp[1].eval()  # a submodule deliberately frozen in eval mode must stay so
    monitor = GenerationMonitor(["ab"], generation=GEN, sample_on_train_end=False, log_metrics=False)
    trainer(tmp_path, [monitor], max_steps=2).fit(model)
    sampling = [modes for modes in model.modes_seen if not any(modes)]
    # every forward is a training step's (2) or a sampling one, all of whose modules are in eval mode: the probe's at
    # the start of fit, then the round at step 0's (one per new token)
    assert len(model.modes_seen) - len(sampling) == 2 and len(sampling) > GEN["max_new_tokens"]
    assert model.training and not model.mlp[1].training and model.mlp[0].training


def test_same_noise_every_round(tmp_path):
    monitor = GenerationMonitor(["ab"], every_n_train_steps=1, generation=GEN, seed=7)
    model = TinyLM()
    trainer(tmp_path, [monitor], max_steps=1).fit(model)
    first = monitor.sample_now(model.trainer, step=99)
    second = monitor.sample_now(model.trainer, step=99)
    assert first == second


class _FailsAfterProbe(TinyLM):
    """The sampling forward raises once training has begun (the probe at the start of fit passes)."""

    def forward(self, ids):
        if not self.training and self.trainer.global_step > 0:
            raise RuntimeError("forward exploded")
        return super().forward(ids)


def test_failing_forward_warns_and_training_completes(tmp_path):
    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN, sample_on_train_start=False)
    with pytest.warns(UserWarning, match="RuntimeError: forward exploded"):
        t, events = run(tmp_path, monitor, max_steps=4, model=_FailsAfterProbe())
    assert t.global_step == 4
    assert events == {}


def test_failing_forward_raises_with_on_error_raise(tmp_path):
    monitor = GenerationMonitor(["ab"], generation=GEN, on_error="raise", sample_on_train_start=False,
                                every_n_train_steps=2)
    t = trainer(tmp_path, [monitor], max_steps=4)
    with pytest.raises(RuntimeError, match="forward exploded"):
        t.fit(_FailsAfterProbe())
    assert t.global_step == 2


def test_once_per_step_under_gradient_accumulation(tmp_path):
    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN, sample_on_train_start=False)
    _, events = run(tmp_path, monitor, max_steps=4, accumulate_grad_batches=3)
    assert sorted(events["samples/prompt_00"]) == [2, 4]


def test_every_n_epochs(tmp_path):
    monitor = GenerationMonitor(["ab"], every_n_epochs=1, generation=GEN, sample_on_train_start=False,
                                sample_on_train_end=False)
    _, events = run(tmp_path, monitor, max_steps=-1, max_epochs=2, limit_train_batches=3)
    assert sorted(events["samples/prompt_00"]) == [3, 6]


def test_train_time_interval(tmp_path):
    monitor = GenerationMonitor(["ab"], train_time_interval=timedelta(microseconds=1), generation=GEN,
                                sample_on_train_start=False, sample_on_train_end=False)
    _, events = run(tmp_path, monitor, max_steps=3)
    assert sorted(events["samples/prompt_00"]) == [1, 2, 3]


def test_resume_from_checkpoint_continues_schedule(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=2)
    first = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN, sample_on_train_end=False)
    trainer(tmp_path, [first, ckpt], max_steps=4, enable_checkpointing=True).fit(TinyLM())
    assert first.last_round_step == 4
    resumed = GenerationMonitor(["ab"], every_n_train_steps=2, generation=GEN)
    t = trainer(tmp_path, [resumed], max_steps=6, logger=trainer(tmp_path).logger)
    t.fit(TinyLM(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    steps = sorted(text_events(t.logger.log_dir)["samples/prompt_00"])
    # Step 4 was sampled before the checkpoint: the resumed run does not repeat it at train start.
    assert steps == [0, 2, 4, 6]


def test_warns_once_when_no_logger_takes_text(tmp_path):
    with pytest.warns(UserWarning, match="no attached logger can show text"):
        trainer(tmp_path, [GenerationMonitor(["ab"], generation=GEN)], max_steps=1, logger=False).fit(TinyLM())


def test_tokenizer_from_datamodule_and_explicit_eos(tmp_path):
    import lightning.pytorch as pl

    class Data(pl.LightningDataModule):
        tokenizer = CharTokenizer(eos=True)

        def train_dataloader(self):
            return TinyLM().train_dataloader()

    model = TinyLM()
    del model.tokenizer
    monitor = GenerationMonitor(["ab"], generation={"max_new_tokens": 30, "do_sample": True})
    trainer(tmp_path, [monitor], max_steps=1).fit(model, datamodule=Data())
    assert monitor._plan.settled.config.eos_token_id == VOCAB.index("\n")


class DoubleEverything(LogitsProcessor):
    def __call__(self, input_ids, scores):
        return scores * 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prompts": []}, ValueError, "`prompts` must hold at least one prompt"),
        ({"prompts": ["ok", "   "]}, ValueError, r"`prompts\[1\]` is empty or whitespace"),
        ({"prompts": "missing.txt"}, FileNotFoundError, "missing.txt"),
        ({"prompts": ["a"], "every_n_train_steps": 0}, ValueError, "`every_n_train_steps` must be a positive integer"),
        ({"prompts": ["a"], "every_n_train_steps": 2, "every_n_epochs": 1}, ValueError, "at most one of"),
        ({"prompts": ["a"], "train_time_interval": timedelta(0)}, ValueError, "`train_time_interval`"),
        ({"prompts": ["a"], "generation": {"top_kk": 3}}, ValueError, "'top_kk'.*'top_k'"),
        ({"prompts": ["a"], "generation": {"top_p": 1.5}}, ValueError, r"`generation.top_p` must be in \(0, 1\], got 1.5"),
        ({"prompts": ["a"], "generation": {"num_beams": 2}}, NotImplementedError, "num_beams=2"),
        ({"prompts": ["a"], "generation": {"max_new_tokens": 0}}, ValueError, "max_new_tokens"),
        ({"prompts": ["a"], "on_error": "ignore"}, ValueError, "`on_error` must be one of 'warn', 'raise', got 'ignore'"),
        ({"prompts": ["a"], "logits_processors": [lambda ids, s: s]}, TypeError, r"`logits_processors\[0\]`"),
        ({"prompts": ["a"], "tokenizer": "no/such/tokenizer.json"}, FileNotFoundError, "no/such/tokenizer.json"),
        ({"prompts": ["a"], "tokenizer": object()}, TypeError, "`tokenizer`"),
        ({"prompts": ["a"], "batch_size": -1}, ValueError, "`batch_size` must be a positive integer"),
        ({"prompts": ["a"], "model_attr": "a..b"}, ValueError, "`model_attr`"),
        ({"prompts": ["a"], "tag": ""}, ValueError, "`tag` must be a non-empty string"),
        ({"prompts": ["a"], "compile": "yes"}, TypeError, "`compile` must be a bool \\(True or False\\), got 'yes'"),
    ],
)
def test_bad_configuration_rejected_at_construction(kwargs, error, match):
    prompts = kwargs.pop("prompts")
    with pytest.raises(error, match=match):
        GenerationMonitor(prompts, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "model_kwargs", "error", "match"),
    [
        ({"prompts": ["ABC"]}, {}, ValueError, "ABC"),  # characters outside the tokenizer
        ({"prompts": ["a"], "model_attr": "decoder"}, {}, ValueError, "no attribute 'decoder'"),
        ({"prompts": ["a"], "model_attr": "block_size"}, {}, TypeError, "not callable"),
        ({"prompts": ["a"], "generation": {"max_new_tokens": 20}, "context_length": 16}, {"block_size": 16},
         None, None),
        ({"prompts": ["a"], "compile": True}, {}, ValueError, "`compile` needs a model with a static KV cache"),
    ],
)
def test_bad_setup_fails_before_first_step(tmp_path, kwargs, model_kwargs, error, match):
    steps = []

    class Recorder(TinyLM):
        def training_step(self, batch, batch_idx):
            steps.append(batch_idx)
            return super().training_step(batch, batch_idx)

    monitor = GenerationMonitor(kwargs.pop("prompts"), on_error="warn", **kwargs)
    t = trainer(tmp_path, [monitor], max_steps=2)
    if error is None:  # a plain model crops instead: this configuration is fine
        t.fit(Recorder(**model_kwargs))
        assert steps
        return
    with pytest.raises(error, match=match):
        t.fit(Recorder(**model_kwargs))
    assert steps == []


def test_ids_outside_model_vocab_fail_in_setup(tmp_path):
    class Wide(CharTokenizer):
        def encode(self, text):
            return [100]

    model = TinyLM()
    model.tokenizer = Wide()
    model.vocab_size = len(VOCAB)
    with pytest.raises(ValueError, match=r"encodes to ids \[100\] outside the vocabulary \[0, 37\) \(`vocab_size` of "):
        trainer(tmp_path, [GenerationMonitor(["a"])], max_steps=1).fit(model)


def test_long_prompts_cropped_from_the_left_with_warning(tmp_path):
    long_prompt = "abcdefghijklmnopqrstuvwxyz"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, events = run(tmp_path, GenerationMonitor([long_prompt], generation=GEN, context_length=10), max_steps=1)
    assert any("cropped from the left" in str(w.message) for w in caught)
    assert shown(events["samples/prompt_00"][0]).startswith(long_prompt[-10:])


def test_compiled_decode_step_logs_the_samples_eager_decoding_logs(tmp_path):
    generation = {"max_new_tokens": 6, "do_sample": False}
    logged = []
    for compile in (False, True):
        monitor = GenerationMonitor(["ab", "cd"], every_n_train_steps=2, generation=generation, compile=compile,
                                    on_error="raise")
        torch.manual_seed(0)  # the same weights and the same training for both runs
        _, events = run(tmp_path / str(compile), monitor, model=TinyCacheLM(), max_steps=2)
        logged.append({tag: {step: shown(text) for step, text in steps.items()} for tag, steps in events.items()})
    assert logged[0]["samples/prompt_00"].keys() == {0, 2}
    assert logged[1] == logged[0]


class LastOnlyLM(TinyLM):
    """At inference, the last position's logits unless asked for all of them (a protocol only its own adapter knows)."""

    def forward(self, ids, all_positions=False):
        logits = super().forward(ids)
        return logits if all_positions or self.training else logits[:, -1:]


class AllPositionsAdapter(PlainAdapter):
    def sequence_logits(self, input_ids):
        return self.model(input_ids, all_positions=True)


def test_the_probe_decides_scoring_with_the_adapter_the_rounds_use(tmp_path):
    # The auto-detected plain adapter sees only the last position; the user's adapter can score. The probe must ask
    # the same adapter the rounds score with, or it turns scoring off for a model the rounds could score.
    monitor = GenerationMonitor(["ab"], generation=GEN, adapter=AllPositionsAdapter, sample_on_train_end=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, [monitor], max_steps=1).fit(LastOnlyLM())
    assert monitor._plan.score is True
    assert not [w for w in caught if "not scored" in str(w.message)]
