"""What users read: quality scalars, greedy beside sampled, references, prompts from data, samples.jsonl."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny import VOCAB, TinyLM, text_events, trainer

from lightning_gen import GenerationMonitor

GEN = {"max_new_tokens": 6, "do_sample": True}


def scalars(log_dir: str) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def records(log_dir: str) -> list[dict]:
    with open(f"{log_dir}/samples.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_quality_scalars_at_sampling_steps(tmp_path):
    t = trainer(tmp_path, [GenerationMonitor(["ab", "cd"], every_n_train_steps=2, generation=GEN)], max_steps=4)
    t.fit(TinyLM())
    charts = scalars(t.logger.log_dir)
    for name in ("length", "eos_rate", "distinct_1", "distinct_2", "repeated_ngram_rate", "tokens_per_second",
                 "mean_logprob", "perplexity"):
        assert sorted(charts[f"samples/{name}"]) == [0, 2, 4], name
    assert charts["samples/length"][2] == GEN["max_new_tokens"]  # no EOS: every completion runs to the limit
    assert charts["samples/eos_rate"][2] == 0.0
    mean_logprob = charts["samples/mean_logprob"][4]
    assert mean_logprob < 0 and math.isclose(charts["samples/perplexity"][4], math.exp(-mean_logprob), rel_tol=1e-5)
    # The logged scalars are the means of what samples.jsonl holds per sample.
    at_4 = [r for r in records(t.logger.log_dir) if r["step"] == 4]
    assert math.isclose(sum(r["metrics"]["mean_logprob"] for r in at_4) / 2, mean_logprob, rel_tol=1e-5)


def test_samples_jsonl_one_record_per_prompt_per_step(tmp_path):
    t = trainer(tmp_path, [GenerationMonitor(["ab", "x|y"], every_n_train_steps=2, generation=GEN)], max_steps=2)
    t.fit(TinyLM())
    rows = records(t.logger.log_dir)
    assert [(r["step"], r["index"], r["prompt"]) for r in rows] == [(0, 0, "ab"), (0, 1, "x|y"), (2, 0, "ab"), (2, 1, "x|y")]
    events = text_events(t.logger.log_dir)
    for r in rows:
        assert len(r["completion_ids"]) == GEN["max_new_tokens"]
        assert r["completion"] == "".join(VOCAB[i] for i in r["completion_ids"])
        assert r["prompt_ids"] == [VOCAB.index(c) for c in r["prompt"]]
    assert len(events["samples/prompt_01"]) == 2


def test_also_greedy_shows_both(tmp_path):
    monitor = GenerationMonitor(["ab"], generation=GEN, also_greedy=True, sample_on_train_start=False)
    model = TinyLM()
    t = trainer(tmp_path, [monitor], max_steps=1)
    t.fit(model)
    (row,) = records(t.logger.log_dir)
    with torch.no_grad():
        model.eval()
        ids = torch.tensor([[VOCAB.index("a"), VOCAB.index("b")]])
        for _ in range(GEN["max_new_tokens"]):  # the greedy continuation by hand
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert row["greedy"] == "".join(VOCAB[i] for i in ids[0, 2:].tolist())
    assert "greedy:" in events_text(t)


def events_text(t) -> str:
    return text_events(t.logger.log_dir)["samples/prompt_00"][1]


def test_reference_loss_logged_for_prompts_with_reference(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "the", "reference": " end"}) + "\n")
    t = trainer(tmp_path, [GenerationMonitor(str(prompts), generation=GEN, sample_on_train_end=False)], max_steps=1)
    t.fit(TinyLM())
    (row,) = records(t.logger.log_dir)
    charts = scalars(t.logger.log_dir)
    # An untrained model is close to uniform over the 37 characters: loss near log(37).
    assert abs(row["metrics"]["reference_loss"] - math.log(len(VOCAB))) < 1.0
    assert charts["samples/reference_loss"][0] == pytest.approx(row["metrics"]["reference_loss"], rel=1e-5)
    assert row["reference"] == " end"


class WithVal(TinyLM):
    """TinyLM with a validation set of its own: fixed rows, in order (a validation loader is not shuffled)."""

    VAL = torch.randint(0, len(VOCAB), (16, 17), generator=torch.Generator().manual_seed(1))

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(self.VAL), batch_size=4)

    def validation_step(self, batch, batch_idx):
        return None


def test_prompts_from_validation_data(tmp_path):
    monitor = GenerationMonitor([], generation=GEN, prompts_from_data=3, data_prompt_tokens=5, data_reference_tokens=4,
                                sample_on_train_end=False)
    t = trainer(tmp_path, [monitor], max_steps=1, limit_val_batches=1)
    t.fit(WithVal())
    rows = records(t.logger.log_dir)
    # The first three validation examples: their first 5 tokens as the prompt, the next 4 as the reference.
    assert [r["prompt_ids"] for r in rows] == WithVal.VAL[:3, :5].tolist()
    assert [r["reference"] for r in rows] == ["".join(VOCAB[i] for i in row) for row in WithVal.VAL[:3, 5:9].tolist()]


@pytest.mark.parametrize(("every", "steps"), [(None, [0, 3, 6]), (3, [0, 3, 6, 7])])
def test_sample_on_validation_once_per_step(tmp_path, every, steps):
    """Validation every 3 steps (not in the sanity check); with a schedule on the same steps, one round each."""
    monitor = GenerationMonitor(["ab"], generation=GEN, sample_on_validation=True, every_n_train_steps=every,
                                sample_on_train_end=every is not None)
    t = trainer(tmp_path, [monitor], max_steps=7, val_check_interval=3, limit_val_batches=1, num_sanity_val_steps=1)
    t.fit(WithVal())
    assert [r["step"] for r in records(t.logger.log_dir)] == steps


def test_sample_on_validation_is_checked():
    with pytest.raises(TypeError, match="`sample_on_validation` must be a bool"):
        GenerationMonitor(["ab"], sample_on_validation="yes")


def test_last_position_only_model_warns_once_and_logs_other_scalars(tmp_path):
    class LastOnly(TinyLM):
        def forward(self, ids):
            logits = super().forward(ids)
            return logits if self.training else logits[:, -1:]  # nanoGPT at inference

    monitor = GenerationMonitor(["ab"], every_n_train_steps=1, generation=GEN)
    t = trainer(tmp_path, [monitor], max_steps=3)
    with pytest.warns(UserWarning, match="last position only") as caught:
        t.fit(LastOnly())
    assert sum("last position only" in str(w.message) for w in caught) == 1
    charts = scalars(t.logger.log_dir)
    assert sorted(charts["samples/length"]) == [0, 1, 2, 3]
    assert "samples/mean_logprob" not in charts
