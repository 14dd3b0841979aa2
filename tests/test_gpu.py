"""Checks that need a CUDA GPU: skipped elsewhere (this project's CI has none); run them on a GPU machine."""

from __future__ import annotations

import pytest
import torch
from tiny import CharTokenizer, TinyCacheLM, TinyLM, text_events, trainer
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

from lightning_gen import GenerationMonitor, generate
from lightning_gen.prompts import Prompt
from lightning_gen.sampling import encode_prompts, sample_round
from lightning_gen.tokenization import load_tokenizer

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
    encoded = encode_prompts([Prompt("ab"), Prompt("hello")], tokenizer, vocab_size=37, max_prompt_tokens=None)
    config = GenerationConfig(max_new_tokens=8, do_sample=True)
    sample_round(model, encoded, tokenizer, config, seed=0)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(100):
        sample_round(model, encoded, tokenizer, config, seed=0)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    assert model.kv_cache is None


def test_bf16_mixed_on_cuda(tmp_path):
    monitor = GenerationMonitor(["ab"], every_n_train_steps=2, generation={"max_new_tokens": 5, "do_sample": True},
                                empty_cache=True)
    trainer(tmp_path, [monitor], max_steps=2, accelerator="cuda", precision="bf16-mixed").fit(TinyLM())
    assert sorted(text_events(str(tmp_path / "tb" / "version_0"))["samples/prompt_00"]) == [0, 2]
