"""`generate_completions`: prompts of mixed lengths give what per-group (plain) or per-prompt (HF) calls give."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from tiny import SPECIAL_IDS, CumMeanLM, tiny_gpt2, tiny_llama
from torch import nn
from transformers import PreTrainedModel

from lightning_gen import generate, generate_completions
from lightning_gen.decoding.batching import plan_batches

V = 24


class Script(nn.Module):
    """Bigram lookup: the next token after t is ``table[t]``."""

    vocab_size = V

    def __init__(self, table: list[int]) -> None:
        super().__init__()
        self.register_buffer("table", 10.0 * F.one_hot(torch.tensor(table), V).float())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]  # (B, T, V)


MIXED = [[3, 4, 5], [6, 7], [8, 9, 10], [11], [12, 13], [14, 15, 16]]  # lengths 3, 2, 3, 1, 2, 3


# ---------------------------------------------------------------------------------------- plan_batches
@pytest.mark.parametrize(("lengths", "batch_size", "policy", "expected"), [
    ([3, 5, 3, 5, 4], 8, "group", [[0, 2], [1, 3], [4]]),
    ([3, 5, 3, 5, 4], 8, "pad", [[0, 1, 2, 3, 4]]),
    ([3, 5, 3, 5, 4], 2, "pad", [[0, 1], [2, 3], [4]]),
    ([3, 3, 3, 5], 2, "group", [[0, 1], [2], [3]]),
    ([7, 7, 7], 1, "group", [[0], [1], [2]]),
    ([7, 7, 5], 8, "single", [[0], [1], [2]]),
    ([4], 3, "pad", [[0]]),
])
def test_plan_batches(lengths, batch_size, policy, expected):
    assert plan_batches(lengths, batch_size=batch_size, policy=policy) == expected


def test_plan_batches_never_mixes_lengths_without_padding():
    lengths = [5, 1, 5, 2, 1, 5, 2, 2, 5]
    plan = plan_batches(lengths, batch_size=2, policy="group")
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    assert all(len({lengths[i] for i in batch}) == 1 and len(batch) <= 2 for batch in plan)


# ---------------------------------------------------------------------------------------- plain models
def test_plain_model_is_never_shown_padding():
    model = CumMeanLM(V)
    generate_completions(model, MIXED, max_new_tokens=2)  # the first call also asks the model how to batch
    model.batch_shapes.clear()
    generate_completions(model, MIXED, max_new_tokens=2)
    prefills = model.batch_shapes[::2]
    assert prefills == [(3, 3), (2, 2), (1, 1)]  # one call per length, in order of first appearance


def test_plain_sampling_equals_generate_per_length_group_with_a_shared_generator():
    model = CumMeanLM(V)
    kwargs = dict(max_new_tokens=6, do_sample=True, temperature=1.5)
    out = generate_completions(model, MIXED, generator=torch.Generator().manual_seed(0), **kwargs)

    generator = torch.Generator().manual_seed(0)
    expected: dict[int, list[int]] = {}
    for group in ([0, 2, 5], [1, 4], [3]):  # one call per length, in order of first appearance
        ids = torch.tensor([MIXED[i] for i in group])
        new = generate(model, ids, generator=generator, **kwargs)[:, ids.shape[1]:]
        expected.update(zip(group, new.tolist()))
    assert out == [expected[i] for i in range(len(MIXED))]


def test_plain_batch_size_splits_groups_and_keeps_the_order():
    model = CumMeanLM(V)
    whole = generate_completions(model, MIXED, max_new_tokens=5)
    model.batch_shapes.clear()
    split = generate_completions(model, MIXED, max_new_tokens=5, batch_size=1)
    assert split == whole
    assert all(shape[0] == 1 for shape in model.batch_shapes)
    alone = [generate(model, torch.tensor([p]), max_new_tokens=5)[0, len(p):].tolist() for p in MIXED]
    assert whole == alone


def test_completions_are_cut_after_the_first_eos():
    table = [(t + 1) % V for t in range(V)]
    table[5] = 1  # 3 → 4 → 5 → EOS(1)
    model = Script(table)
    out = generate_completions(model, [[3], [4, 5], [10, 11]], max_new_tokens=5, eos_token_id=1, pad_token_id=0)
    assert out == [[4, 5, 1], [1], [12, 13, 14, 15, 16]]


def test_completions_are_cut_at_any_eos_and_without_pad_token():
    table = [(t + 1) % V for t in range(V)]
    table[5], table[12] = 1, 2
    out = generate_completions(Script(table), [[3], [10, 11]], max_new_tokens=6, eos_token_id=[2, 1])
    assert out == [[4, 5, 1], [12, 2]]


def test_num_return_sequences_are_grouped_per_prompt_in_prompt_order():
    model = CumMeanLM(V)
    prompts = [[3, 4, 5], [6], [7, 8, 9]]
    out = generate_completions(model, prompts, max_new_tokens=4, do_sample=True, num_return_sequences=2,
                               generator=torch.Generator().manual_seed(1))
    assert len(out) == 6
    generator = torch.Generator().manual_seed(1)
    first = generate(model, torch.tensor([prompts[0], prompts[2]]), max_new_tokens=4, do_sample=True,
                     num_return_sequences=2, generator=generator)[:, 3:].tolist()
    second = generate(model, torch.tensor([prompts[1]]), max_new_tokens=4, do_sample=True,
                      num_return_sequences=2, generator=generator)[:, 1:].tolist()
    assert out == first[:2] + second + first[2:]


def test_prompts_may_be_tensors():
    model = CumMeanLM(V)
    assert generate_completions(model, [torch.tensor([3, 4]), torch.tensor([5])], max_new_tokens=3) == \
        generate_completions(model, [[3, 4], [5]], max_new_tokens=3)


def test_context_length_is_passed_to_the_adapter():
    model = CumMeanLM(V)
    generate_completions(model, [[3, 4, 5, 6]], max_new_tokens=4, context_length=3)
    assert max(shape[1] for shape in model.batch_shapes) == 3


# ---------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(("prompts", "kwargs", "fragment"), [
    ([], {}, "`prompts` is empty"),
    ([[3, 4], []], {}, "`prompts[1]` is empty"),
    ([[3, 4]], {"batch_size": 0}, "`batch_size` must be a positive integer or None, got 0"),
    ([[3, 4]], {"batch_size": -2}, "got -2"),
    ([[3, 4]], {"batch_size": 1.5}, "got 1.5 (float)"),
    ([[3, 4]], {"top_pp": 0.5}, "`generate_completions` got an unknown GenerationConfig field 'top_pp'; did you mean "
                                "'top_p'"),
])
def test_bad_arguments_are_refused(prompts, kwargs, fragment):
    model = CumMeanLM(V)
    with pytest.raises((ValueError, TypeError)) as err:
        generate_completions(model, prompts, max_new_tokens=2, **kwargs)
    assert fragment in str(err.value)
    assert model.batch_shapes == []


# ---------------------------------------------------------------------------------------- transformers models
@pytest.fixture(scope="module", params=["gpt2", "llama"])
def hf_model(request) -> PreTrainedModel:
    return {"gpt2": tiny_gpt2, "llama": tiny_llama}[request.param](V, initializer_range=0.5, **SPECIAL_IDS)


def _prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, V, (n,), generator=g).tolist() for n in (3, 7, 1, 5, 7, 2)]


def test_hf_prompts_are_left_padded_into_one_batch(hf_model):
    shapes = []
    handle = hf_model.register_forward_pre_hook(lambda m, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                                with_kwargs=True)
    try:
        generate_completions(hf_model, _prompts(), max_new_tokens=3)
    finally:
        handle.remove()
    assert (6, 7) in shapes  # all six prompts in one left-padded prefill
    assert all(shape[0] in (1, 2, 6) for shape in shapes)  # and the few calls that asked how to batch


def test_prompts_of_one_length_first_do_not_keep_a_model_from_padding_later():
    from lightning_gen.decoding.adapters import resolve_adapter
    from lightning_gen.decoding.batching import batching_policy

    model = tiny_gpt2(V)  # a model no test asked before
    runner = resolve_adapter(model)
    assert batching_policy(model, runner, [torch.tensor([5, 6, 7]), torch.tensor([8, 9, 10])]) == "group"
    assert batching_policy(model, runner, [torch.tensor([5, 6, 7]), torch.tensor([8, 9])]) == "pad"


@pytest.mark.parametrize("batch_size", [None, 4])
def test_hf_greedy_left_padded_batch_equals_each_prompt_alone(hf_model, batch_size):
    prompts = _prompts()
    batched = generate_completions(hf_model, prompts, max_new_tokens=10, batch_size=batch_size)
    alone = [generate(hf_model, torch.tensor([p]), max_new_tokens=10)[0, len(p):] for p in prompts]
    eos = hf_model.generation_config.eos_token_id
    alone = [a[: a.tolist().index(eos) + 1].tolist() if eos in a.tolist() else a.tolist() for a in alone]
    assert batched == alone
    assert any(len(c) < 10 for c in batched) or len({tuple(c) for c in batched}) > 1  # not a degenerate model


# ---------------------------------------------------------------------------------------- how to batch, asked
@pytest.mark.parametrize(("name", "policy"), [
    ("rwkv", "single"),  # its step-by-step state at batch > 1 differs from one prompt's (transformers 5.25)
    ("xlstm", "group"),  # takes a mask, but pad tokens enter its recurrent state
    ("mamba", "pad"), ("falcon_mamba", "pad"), ("gpt2", "pad"),
])
def test_a_recurrent_model_completes_each_prompt_as_model_generate_does_alone(name, policy):
    from hf_tiny_configs import tiny_model

    from lightning_gen.decoding.adapters import resolve_adapter
    from lightning_gen.decoding.batching import batching_policy

    model = tiny_model(name)
    prompts = [[5, 6, 7, 8], [9, 10, 11, 12, 13, 14], [20, 21, 22, 23, 24, 25], [30, 31]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = [model.generate(torch.tensor([p]), max_new_tokens=8, do_sample=False, pad_token_id=0,
                                eos_token_id=1)[0, len(p):].tolist() for p in prompts]
        ours = generate_completions(model, prompts, max_new_tokens=8, pad_token_id=0, eos_token_id=1)
    assert ours == [a[: a.index(1) + 1] if 1 in a else a for a in alone]
    rows = [torch.tensor(p) for p in prompts]
    assert batching_policy(model, resolve_adapter(model), rows) == policy


def test_a_plain_model_whose_rows_mix_in_a_batch_gets_one_prompt_per_call():
    class MixesRows(CumMeanLM):
        def forward(self, ids):
            return super().forward(ids) + super().forward(ids).mean(0, keepdim=True)  # every row sees the others

    model = MixesRows(V)
    out = generate_completions(model, MIXED, max_new_tokens=3)
    assert out == [generate_completions(model, [p], max_new_tokens=3)[0] for p in MIXED]
    model.batch_shapes.clear()
    generate_completions(model, MIXED, max_new_tokens=3)
    assert {shape[0] for shape in model.batch_shapes} == {1}
