"""`lightning_gen.decoding.adapters._generic_step`: decode steps built directly are the ones HF's generic code builds.

Every architecture of `test_hf_architectures` already checks the tokens against ``model.generate`` over more steps
than are verified; these tests check that the direct route is taken where it should be (and only there), that a
difference from HF's inputs hands the call back to HF's functions, and what it leaves HF to prepare.
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2LMHeadModel

from lightning_gen import generate
from lightning_gen.decoding.adapters import _generic_step as generic_step
from lightning_gen.decoding.adapters._generic_step import VERIFIED_STEPS, GenericStep

NEW = 9


def _prompts(padded: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids = torch.randint(3, 96, (3, 5), generator=torch.Generator().manual_seed(0))
    if not padded:
        return ids, None
    mask = torch.ones_like(ids)
    ids[1, :2], mask[1, :2] = 0, 0
    return ids, mask


def _count_hf_prepare(model, monkeypatch) -> list[int]:
    calls = [0]
    hf_prepare = model.prepare_inputs_for_generation

    def counted(*args, **kwargs):
        calls[0] += 1
        return hf_prepare(*args, **kwargs)

    monkeypatch.setattr(model, "prepare_inputs_for_generation", counted)  # on the instance: the class stays generic
    return calls


def _hf(model, ids, mask, **options):
    with torch.no_grad():
        torch.manual_seed(5)
        return model.generate(ids, attention_mask=mask if mask is not None else torch.ones_like(ids), **options)


@pytest.mark.parametrize("padded", [False, True], ids=["batch", "left-padded"])
@pytest.mark.parametrize("which", ["tiny_gpt2", "tiny_llama"])
@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampling"])
def test_after_the_verified_steps_hf_s_generic_code_prepares_no_step(which, padded, do_sample, request, monkeypatch):
    model = request.getfixturevalue(which)
    ids, mask = _prompts(padded)
    options = dict(max_new_tokens=NEW, do_sample=do_sample, pad_token_id=0, eos_token_id=None)
    expected = _hf(model, ids, mask, **options)
    calls = _count_hf_prepare(model, monkeypatch)
    ours = generate(model, ids, attention_mask=mask, generator=torch.Generator().manual_seed(5), **options)
    assert torch.equal(ours, expected)
    assert calls[0] == 1 + VERIFIED_STEPS  # the prompt, then the steps compared with ours; none after them


def test_a_step_unlike_hf_s_hands_the_rest_of_the_call_to_hf_s_functions(tiny_gpt2, monkeypatch):
    ids, mask = _prompts(padded=True)
    options = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=0, eos_token_id=None)
    expected = _hf(tiny_gpt2, ids, mask, **options)
    built = GenericStep.inputs

    def off_by_one(self, input_ids):  # a release whose positions we would get wrong
        inputs = built(self, input_ids)
        return {**inputs, "position_ids": inputs["position_ids"] + 1}

    monkeypatch.setattr(GenericStep, "inputs", off_by_one)
    calls = _count_hf_prepare(tiny_gpt2, monkeypatch)
    ours = generate(tiny_gpt2, ids, attention_mask=mask, **options)
    assert torch.equal(ours, expected)
    assert calls[0] == NEW  # every forward prepared by HF: the prompt and all NEW - 1 decode steps


def test_a_second_step_unlike_hf_s_is_caught_too(tiny_llama, monkeypatch):
    """The update is ours from the first step on: a wrong one shows at the second verified step."""
    ids, mask = _prompts(padded=False)
    options = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=0, eos_token_id=None)
    expected = _hf(tiny_llama, ids, mask, **options)
    updated = GenericStep.update

    def stale_position(self, outputs):
        position = self._kwargs["position_ids"]
        updated(self, outputs)
        self._kwargs["position_ids"] = position  # never moves on
    monkeypatch.setattr(GenericStep, "update", stale_position)
    calls = _count_hf_prepare(tiny_llama, monkeypatch)
    assert torch.equal(generate(tiny_llama, ids, attention_mask=mask, **options), expected)
    assert calls[0] == NEW


class _OwnPreparation(GPT2LMHeadModel):
    def prepare_inputs_for_generation(self, *args, **kwargs):
        return super().prepare_inputs_for_generation(*args, **kwargs)


def test_a_model_with_generation_code_of_its_own_is_prepared_by_it(tiny_gpt2, monkeypatch):
    model = _OwnPreparation(tiny_gpt2.config).eval()
    model.load_state_dict(tiny_gpt2.state_dict())
    made = []
    monkeypatch.setattr(generic_step.GenericStep, "__init__",
                        lambda self, *a: made.append(self) or pytest.fail("built a generic step"))
    ids, mask = _prompts(padded=False)
    options = dict(max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(model, ids, **options), _hf(tiny_gpt2, ids, mask, **options))
    assert made == []


def test_what_the_generic_step_leaves_to_hf(tiny_gpt2):
    from transformers import DynamicCache, StaticCache

    cache = DynamicCache(config=tiny_gpt2.config)
    base = {"cache": cache, "position_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": None,
            "logits_to_keep": 1, "use_cache": True}
    cpu = torch.device("cpu")
    assert GenericStep.applies(tiny_gpt2, base, cpu)
    assert not GenericStep.applies(tiny_gpt2, {**base, "token_type_ids": torch.zeros(2, 3)}, cpu)  # a key it lacks
    assert not GenericStep.applies(tiny_gpt2, {**base, "use_cache": False}, cpu)
    assert not GenericStep.applies(tiny_gpt2, {**base, "attention_mask": torch.ones(2, 1, 3, 3)}, cpu)  # 4D
    assert not GenericStep.applies(tiny_gpt2, {**base, "cache": None}, cpu)
    static = StaticCache(config=tiny_gpt2.config, max_cache_len=8)
    assert not GenericStep.applies(tiny_gpt2, {**base, "cache": static}, cpu)  # HF builds a 4D mask for it
    assert not GenericStep.applies(tiny_gpt2, base, torch.device("meta"))  # inputs elsewhere: HF moves them
