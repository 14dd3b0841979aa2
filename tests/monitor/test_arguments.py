"""Every bad input is refused before the first training step, with an error naming the argument and the value.

Each case builds the monitor and fits a real Trainer: errors of the constructor, of `setup` and of the probe at
the start of fit all count, and every case checks that no training step ran.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from tiny import CharTokenizer, TinyCacheLM, TinyLM, trainer
from transformers import GenerationConfig, LogitsProcessor, TemperatureLogitsWarper

from lightning_gen import GenerationMonitor
from lightning_gen.monitor.probe import ProbeError


class Counting(TinyLM):
    """TinyLM that counts the training steps it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        return super().training_step(batch, batch_idx)


class CountingCache(TinyCacheLM):
    def __init__(self) -> None:
        super().__init__()
        self.tokenizer = CharTokenizer()
        self.steps_run = 0

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        return super().training_step(batch, batch_idx)


class ReturnsIds(Counting):
    def forward(self, ids):
        logits = super().forward(ids)
        return logits if self.training else logits.argmax(-1)  # (B, T) ids, not logits


class ReturnsScalar(Counting):
    def forward(self, ids):
        logits = super().forward(ids)
        return logits if self.training else logits.sum()


class Returns4D(Counting):
    def forward(self, ids):
        logits = super().forward(ids)
        return logits if self.training else logits[:, None]


class ReturnsDictWithoutLogits(Counting):
    def forward(self, ids):
        logits = super().forward(ids)
        return logits if self.training else {"hidden": logits}


class NeedsTwoTokens(Counting):
    """A model with a minimum prompt length (a convolution's width, say)."""

    def forward(self, ids):
        if ids.shape[1] < 2:
            raise ValueError(f"needs at least 2 tokens, got {ids.shape[1]}")
        return super().forward(ids)


class WideTokenizer(CharTokenizer):
    """Ids beyond the model's 37 logits (a tokenizer that does not match the model)."""

    def encode(self, text):
        return [i + 40 for i in super().encode(text)]

    def decode(self, ids):
        return super().decode([i - 40 if i >= 40 else i for i in ids])


class NotAProcessor:
    def __call__(self, input_ids, scores):
        return scores


BAD = [
    # schedules
    ({"every_n_train_steps": 0}, ValueError, "`every_n_train_steps`"),
    ({"every_n_train_steps": -1}, ValueError, "`every_n_train_steps`"),
    ({"every_n_train_steps": 1.5}, TypeError, "`every_n_train_steps`"),
    ({"every_n_train_steps": "2"}, TypeError, "`every_n_train_steps`"),
    ({"every_n_train_steps": True}, TypeError, "`every_n_train_steps`"),
    ({"every_n_epochs": 0}, ValueError, "`every_n_epochs`"),
    ({"train_time_interval": 5}, TypeError, "`train_time_interval`"),
    ({"train_time_interval": timedelta(0)}, ValueError, "`train_time_interval`"),
    ({"every_n_train_steps": 2, "every_n_epochs": 1}, ValueError, "every_n_epochs"),
    # booleans given as strings or numbers
    ({"sample_on_train_start": "false"}, TypeError, "`sample_on_train_start`"),
    ({"sample_on_train_start": 1}, TypeError, "`sample_on_train_start`"),
    ({"sample_on_train_end": "true"}, TypeError, "`sample_on_train_end`"),
    ({"sample_on_validation": 0}, TypeError, "`sample_on_validation`"),
    ({"also_greedy": "yes"}, TypeError, "`also_greedy`"),
    ({"empty_cache": None}, TypeError, "`empty_cache`"),
    ({"compile": "true"}, TypeError, "`compile`"),
    ({"log_metrics": "false"}, TypeError, "`log_metrics`"),
    ({"generation": {"do_sample": "false"}}, TypeError, "`generation.do_sample`"),
    ({"generation": {"use_cache": "true"}}, TypeError, "`generation.use_cache`"),
    ({"generation": {"renormalize_logits": 1}}, TypeError, "`generation.renormalize_logits`"),
    # generation
    ({"generation": "max_new_tokens=8"}, TypeError, "`generation` must be a dict"),
    ({"generation": ["max_new_tokens", 8]}, TypeError, "`generation` must be a dict"),
    ({"generation": 8}, TypeError, "`generation` must be a dict"),
    ({"generation": {"max_new_tokens": 0}}, ValueError, "max_new_tokens"),
    ({"generation": {"temperature": -1.0, "do_sample": True}}, ValueError, "temperature"),
    ({"generation": {"top_p": 1.5, "do_sample": True}}, ValueError, "top_p"),
    ({"generation": {"top_k": -2, "do_sample": True}}, ValueError, "top_k"),
    ({"generation": {"num_beams": 4}}, NotImplementedError, "num_beams"),
    ({"generation": {"max_new_token": 8}}, ValueError, "max_new_token"),
    ({"generation": {"max_new_tokens": 40}, "model": lambda: CountingCache()}, ValueError,
     "`generation.max_new_tokens`=40 leaves no room"),  # a KV cache of 32 positions
    # processors
    ({"logits_processors": "temperature"}, TypeError, "`logits_processors`"),
    ({"logits_processors": 5}, TypeError, "`logits_processors`"),
    ({"logits_processors": [NotAProcessor()]}, TypeError, "`logits_processors[0]`"),
    # seed
    ({"seed": 2**70}, ValueError, "`seed`"),
    ({"seed": -(2**70)}, ValueError, "`seed`"),
    ({"seed": "0"}, TypeError, "`seed`"),
    ({"seed": 1.5}, TypeError, "`seed`"),
    # model, batching and naming
    ({"model_attr": ""}, ValueError, "`model_attr`"),
    ({"model_attr": "a..b"}, ValueError, "`model_attr`"),
    ({"model_attr": "decoder"}, ValueError, "`model_attr`"),
    ({"batch_size": 0}, ValueError, "`batch_size`"),
    ({"batch_size": "4"}, TypeError, "`batch_size`"),
    ({"context_length": 0}, ValueError, "`context_length`"),
    ({"vocab_size": -5}, ValueError, "`vocab_size`"),
    ({"tag": ""}, ValueError, "`tag`"),
    ({"tag": "  "}, ValueError, "`tag`"),
    ({"on_error": "ignore"}, ValueError, "`on_error`"),
    ({"distributed": "ddp"}, ValueError, "`distributed`"),
    ({"prompts_from_data": -1}, ValueError, "`prompts_from_data`"),
    ({"data_prompt_tokens": 0}, ValueError, "`data_prompt_tokens`"),
    ({"tokenizer": "/no/such/tokenizer.json"}, FileNotFoundError, "`tokenizer`"),
    # what the probe finds at the start of fit
    ({"model": ReturnsIds}, ProbeError, "integer tensor of shape (1, 2) (token ids?)"),
    ({"model": ReturnsScalar}, ProbeError, "logits of shape ()"),
    ({"model": Returns4D}, ProbeError, "logits of shape (1, 1, 2, 37)"),
    ({"model": ReturnsDictWithoutLogits}, ProbeError, "a mapping without 'logits' (keys ['hidden'])"),
    ({"model": NeedsTwoTokens, "prompts": ["ab", "x"]}, ProbeError,
     "`prompts[1]` 'x', the shortest prompt, 1 tokens completed by 4 as a round runs, the plain protocol) failed "
     "with ValueError: needs at least 2 tokens"),
    ({"tokenizer": WideTokenizer()}, ProbeError, "it takes ids below 37 (found by probing) and the input holds "
     "ids [40, 41]"),
    ({"generation": {"forced_eos_token_id": 99}}, ProbeError, "`generation.forced_eos_token_id` holds ids [99]"),
    ({"generation": {"bad_words_ids": [[3], [120]]}}, ProbeError, "`generation.bad_words_ids` holds ids [120]"),
    ({"generation": {"sequence_bias": [[[200], -1.0]]}}, ProbeError, "`generation.sequence_bias` holds ids [200]"),
    ({"generation": {"suppress_tokens": [37]}}, ProbeError, "`generation.suppress_tokens` holds ids [37]"),
]


@pytest.mark.parametrize(("arguments", "error", "named"), BAD, ids=[f"{i:02d}-{next(iter(a))}" for i, (a, _, _) in
                                                                     enumerate(BAD)])
def test_bad_input_is_refused_before_the_first_step(tmp_path, arguments, error, named):
    arguments = dict(arguments)
    model = arguments.pop("model", Counting)()
    prompts = arguments.pop("prompts", ["ab", "hello"])
    options = {"generation": {"max_new_tokens": 4}, "console": "off", **arguments}
    t = None
    with pytest.raises(error) as caught:
        monitor = GenerationMonitor(prompts, **options)
        t = trainer(tmp_path, [monitor], max_steps=2)
        t.fit(model)
    assert named in str(caught.value)
    assert model.steps_run == 0 and (t is None or t.global_step == 0)


def test_at_least_forty_bad_inputs_are_covered():
    assert len(BAD) >= 40


def test_generation_may_be_a_generation_config_and_one_processor_is_wrapped(tmp_path):
    processor = TemperatureLogitsWarper(0.7)
    monitor = GenerationMonitor(["ab"], generation=GenerationConfig(max_new_tokens=3, do_sample=True),
                                logits_processors=processor, console="off")
    assert monitor.generation == {"max_new_tokens": 3, "do_sample": True}
    assert monitor.logits_processors == [processor] and isinstance(processor, LogitsProcessor)
    trainer(tmp_path, [monitor], max_steps=1).fit(TinyLM())
    assert monitor.last_round_step == 1


def test_max_length_without_max_new_tokens_on_a_cache_model_is_valid(tmp_path):
    """`{"max_new_tokens": None, "max_length": 12}` once crashed in `setup` (`context - None`)."""
    monitor = GenerationMonitor(["ab"], generation={"max_new_tokens": None, "max_length": 12}, console="off")
    model = TinyCacheLM()
    model.tokenizer = CharTokenizer()
    trainer(tmp_path, [monitor], max_steps=1).fit(model)
    assert monitor.last_round_step == 1
