"""Checks that need a CUDA GPU: skipped elsewhere (this project's CI has none); run them on a GPU machine."""

from __future__ import annotations

import pytest
import torch
from tiny import CharTokenizer, TinyCacheLM, TinyLM, plan_for, text_events, trainer
from transformers import GPT2Config, GPT2LMHeadModel

from lightning_gen import GenerationMonitor, generate
from lightning_gen.decoding import _draws as draws, _sampler
from lightning_gen.monitor.tokenized_prompts import encode_prompts
from lightning_gen.monitor.round import sample_round
from lightning_gen.text.samples import Prompt
from lightning_gen.text.tokenization import load_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_generate_on_cuda_matches_hf_generate():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=128, n_positions=64)).cuda().eval()
    ids = torch.randint(0, 128, (3, 6), device="cuda")
    config = {"max_new_tokens": 12, "do_sample": True, "top_k": 20, "top_p": 0.9, "temperature": 0.8}
    torch.manual_seed(5)
    reference = model.generate(ids, **config)
    ours = generate(model, ids, generator=torch.Generator(device="cuda").manual_seed(5), **config)
    assert torch.equal(ours, reference)


def test_no_cuda_memory_growth_over_100_rounds():
    model = TinyCacheLM().cuda()
    tokenizer = load_tokenizer(CharTokenizer())
    encoded = encode_prompts([Prompt("ab"), Prompt("hello")], tokenizer, max_prompt_tokens=None)
    plan = plan_for(model, tokenizer, dict(max_new_tokens=8, do_sample=True))
    sample_round(model, encoded, tokenizer, plan, seed=0)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(100):
        sample_round(model, encoded, tokenizer, plan, seed=0)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    assert model.kv_cache is None


def test_bf16_mixed_on_cuda(tmp_path):
    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation={"max_new_tokens": 5, "do_sample": True},
                                empty_cache=True)
    trainer(tmp_path, [monitor], max_steps=2, accelerator="cuda", precision="bf16-mixed").fit(TinyLM())
    assert sorted(text_events(str(tmp_path / "tb" / "version_0"))["samples/prompt_00"]) == [0, 2]


def _example_gpt():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from model import GPT

    torch.manual_seed(0)
    return GPT(vocab_size=100, block_size=128, n_layer=2, n_head=4, n_embd=64).cuda().eval()


def test_multinomial_s_draw_is_reproduced_on_cuda():
    assert draws.emulated("cuda")


@pytest.mark.parametrize("options", [{"do_sample": False}, {"do_sample": True, "temperature": 0.8, "top_k": 40}])
def test_decode_steps_never_wait_for_the_gpu(options, monkeypatch):
    # From the first decode step until `finish`, any host sync raises (CUDA's sync debug mode).
    model = _example_gpt()
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: torch.cuda.set_sync_debug_mode("error") if args[0].shape[1] == 1 else None,
        with_kwargs=True)
    finish = _sampler.Sampler.finish

    def relaxed_finish(self):
        torch.cuda.set_sync_debug_mode("default")
        return finish(self)

    monkeypatch.setattr(_sampler.Sampler, "finish", relaxed_finish)
    try:
        out = generate(model, torch.randint(0, 100, (4, 8), device="cuda"), max_new_tokens=24,
                       generator=torch.Generator(device="cuda").manual_seed(0), **options)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        hook.remove()
    assert out.shape == (4, 32)


def test_sync_free_sampling_on_cuda_draws_what_torch_multinomial_draws(monkeypatch):
    model = _example_gpt()
    ids = torch.randint(0, 100, (4, 8), device="cuda")
    options = {"max_new_tokens": 24, "do_sample": True, "temperature": 0.8, "top_k": 40}
    ours = torch.Generator(device="cuda").manual_seed(3)
    got = generate(model, ids, generator=ours, **options)
    monkeypatch.setattr(_sampler, "ENABLED", False)  # HF's processors and torch.multinomial at every step
    plain = torch.Generator(device="cuda").manual_seed(3)
    assert torch.equal(got, generate(model, ids, generator=plain, **options))
    assert torch.equal(ours.get_state(), plain.get_state())


def test_compiled_decode_step_with_cuda_graphs_matches_eager_greedy():
    model = _example_gpt()
    ids = torch.randint(0, 100, (4, 8), device="cuda")
    eager = generate(model, ids, max_new_tokens=24)
    for _ in range(2):  # the second call replays the captured graph
        assert torch.equal(generate(model, ids, max_new_tokens=24, compile=True), eager)


def test_eos_decode_steps_wait_for_the_gpu_only_every_few_steps(monkeypatch):
    # With EOS, the loop reads "has every row ended?" once per `EOS_CHECK_EVERY` steps, not once per token; the steps
    # run past HF's stop are taken back, so tokens and generator state equal a loop that checks every step.
    import warnings

    from lightning_gen.decoding import generation

    model = _example_gpt()
    ids = torch.randint(0, 100, (4, 8), device="cuda")
    options = {"max_new_tokens": 40, "do_sample": True, "temperature": 0.8, "top_k": 40}
    probe = generate(model, ids, generator=torch.Generator(device="cuda").manual_seed(3), **options)[:, 8:]
    eos = sorted({int(probe[row, 3 + 5 * row]) for row in range(4)})  # every row ends, the last one by step 19
    options.update(eos_token_id=eos, pad_token_id=0)
    monkeypatch.setitem(generation.EOS_CHECK_EVERY, "cuda", 1)  # the reference: a check at every step
    each_step = torch.Generator(device="cuda").manual_seed(3)
    reference = generate(model, ids, generator=each_step, **options)
    taken = reference.shape[1] - 8
    assert taken < 40, "design: every row ends early"
    every = next(e for e in range(8, 1, -1) if taken % e and -(-taken // e) * e < 40)  # a check past HF's stop
    monkeypatch.setitem(generation.EOS_CHECK_EVERY, "cuda", every)
    forwards: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: forwards.append(0) if args[0].shape[1] == 1 else None, with_kwargs=True)
    finish = _sampler.Sampler.finish

    def relaxed_finish(self):
        torch.cuda.set_sync_debug_mode("default")
        return finish(self)

    monkeypatch.setattr(_sampler.Sampler, "finish", relaxed_finish)
    ours = torch.Generator(device="cuda").manual_seed(3)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            got = generate(model, ids, generator=ours, **options)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        hook.remove()
    steps = len(forwards) + 1  # decode forwards, plus the prefill's step
    waits = sum("synchroniz" in str(w.message) for w in caught)
    assert steps > taken, "design: the loop ran past HF's stop"
    assert waits <= steps // every + 8, (waits, steps, every)  # the checks, plus setup and the final trim
    assert torch.equal(got, reference)
    assert torch.equal(ours.get_state(), each_step.get_state())
