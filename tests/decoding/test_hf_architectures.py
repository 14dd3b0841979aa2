"""Every decoder-only architecture transformers ships that runs on the CPU: ``generate`` is token-identical to
``model.generate``: greedy and sampling on a batch, greedy on a left-padded batch.

Each model is built from its own config made tiny (2 layers, width 32, 96 tokens; random weights, nothing is
downloaded). The cases that need transformers' own generation code rather than a copy of it are here: RWKV's
``state``, Mamba and FalconMamba on a left-padded batch (the mask dropped at decode steps), OpenAI-GPT, MiniMax
and xLSTM (no default `DynamicCache`), Phi-3 with long-RoPE crossing ``original_max_position_embeddings`` (the
prompt re-run with the long factors), hybrid linear-attention models (Qwen3-Next, LFM2, Nemotron-H, Jamba,
Mamba-2). Where
transformers' own ``generate`` fails on the CPU the case is skipped with its error.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from lightning_gen import generate
from lightning_gen.decoding.adapters import HFAdapter

VOCAB, PAD, EOS, BOS = 96, 0, 1, 2
NEW_TOKENS = 8

ARCHITECTURES = [
    "apertus", "arcee", "biogpt", "bitnet", "bloom", "codegen", "cohere", "cohere2", "ctrl", "cwm", "diffllama",
    "doge", "dots1", "ernie4_5", "ernie4_5_moe", "exaone", "exaone4", "exaone_moe", "falcon", "falcon_mamba",
    "flex_olmo", "gemma", "gemma2", "gemma3_text", "glm", "glm4", "glm4_moe", "gpt2", "gpt_bigcode", "gpt_neo",
    "gpt_neox", "gpt_oss", "gptj", "granite", "granitemoe", "helium", "hunyuan_v1_dense", "hunyuan_v1_moe",
    "internlm3", "jamba", "jetmoe", "lfm2", "llama", "llama4_text", "mamba", "mamba2", "mimo_v2_flash", "minimax", "minimax_m2",
    "ministral", "mistral", "mixtral", "mpt", "nanochat", "nemotron", "nemotron_h", "olmo", "olmo2", "olmo3",
    "olmoe", "openai-gpt", "opt", "persimmon", "phi", "phi3", "phimoe", "qwen2", "qwen2_moe", "qwen3", "qwen3_5_text",
    "qwen3_moe", "qwen3_next", "rwkv", "seed_oss", "smollm3", "stablelm", "starcoder2", "vaultgemma", "xglm", "xlstm",
]

# Sizes set wherever the config has the field; each architecture reads the names it knows.
_TINY = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, vocab_size=VOCAB, max_position_embeddings=128, n_embd=32, n_layer=2, n_head=4, n_positions=128,
    d_model=32, n_layers=2, num_layers=2, embed_dim=32, moe_intermediate_size=32, num_experts=4,
    num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2, shared_expert_intermediate_size=32,
    n_shared_experts=1, ffn_hidden_size=64, n_inner=64, state_size=8, expand=2, conv_kernel=4, time_step_rank=4,
    pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS, initializer_range=0.2, first_k_dense_replace=1,
    linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=4, n_group=1,
    topk_group=1, attention_window_size=16, sliding_window=16, tie_word_embeddings=False, rotary_dim=4,
    attention_hidden_size=32, context_length=128, partial_rotary_factor=0.5, embedding_dim=32, num_blocks=2,
)


# What a few architectures need beyond `_TINY` (their own names for the sizes).
_EXTRA = {
    "mamba2": dict(num_heads=8, head_dim=8, n_groups=1, chunk_size=16),
    "jamba": dict(attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                  mamba_d_state=8, mamba_dt_rank=4, mamba_expand=2),
}


def _tiny_config(name: str):
    config = AutoConfig.for_model(name)
    for key, value in {**_TINY, **_EXTRA.get(name, {})}.items():
        if hasattr(config, key):
            try:
                setattr(config, key, value)
            except AttributeError:  # a derived property
                pass
    types = getattr(config, "layer_types", None)
    if types is not None and len(types) != config.num_hidden_layers:
        try:  # hybrids: keep the first and the last kind of layer (linear attention, then full attention)
            config.layer_types = [types[0], types[-1]]
        except AttributeError:
            pass
    return config


def _long_rope_phi3_config():
    """Phi-3 with long-RoPE whose original context (8) a prompt of 6 plus 8 new tokens crosses."""
    config = _tiny_config("phi3")
    half = config.hidden_size // config.num_attention_heads // 2
    config.original_max_position_embeddings = 8
    config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
                              "short_factor": [1.0] * half, "long_factor": [1.0 + 3 * i for i in range(half)],
                              "original_max_position_embeddings": 8}
    config.partial_rotary_factor = 1.0
    return config


@functools.cache
def tiny_model(name: str):
    config = _long_rope_phi3_config() if name == "phi3-longrope" else _tiny_config(name)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config).eval()


def _batch(padded: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    if not padded:
        return ids, None
    mask = torch.ones_like(ids)
    ids[0, :2], mask[0, :2] = PAD, 0  # row 0 is 4 tokens, left-padded
    return ids, mask


CASES = {
    "greedy": dict(do_sample=False),
    "sampling": dict(do_sample=True, temperature=1.3, top_k=0),
}


@pytest.mark.parametrize(("case", "padded"), [("greedy", False), ("sampling", False), ("greedy", True)],
                         ids=["greedy", "sampling", "greedy-left-padded"])
@pytest.mark.parametrize("name", [*ARCHITECTURES, "phi3-longrope"])
def test_token_identical_to_model_generate(name: str, case: str, padded: bool) -> None:
    from transformers import CONFIG_MAPPING, __version__

    if name.split("-")[0] not in CONFIG_MAPPING and name not in CONFIG_MAPPING:
        pytest.skip(f"transformers {__version__} does not have {name}")
    model = tiny_model(name)
    ids, mask = _batch(padded)
    options = dict(CASES[case], max_new_tokens=NEW_TOKENS, pad_token_id=PAD, eos_token_id=EOS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(7)
        try:
            expected = model.generate(ids, attention_mask=mask, **options)
        except Exception as err:  # noqa: BLE001 - transformers itself cannot run this case
            pytest.skip(f"transformers' own generate fails for {name} ({case}, {'padded' if padded else 'batch'}) on "
                        f"the CPU: {type(err).__name__}: {err}")
        torch.manual_seed(123)  # ours must not draw from the global RNG
        ours = generate(model, ids, attention_mask=mask, generator=torch.Generator().manual_seed(7), **options)
    assert torch.equal(ours, expected)


def test_the_matrix_covers_at_least_forty_architectures_and_the_special_cases():
    assert len(set(ARCHITECTURES)) >= 40
    assert {"rwkv", "mamba", "falcon_mamba", "openai-gpt", "minimax", "xlstm", "phi3"} <= set(ARCHITECTURES)
    model = tiny_model("phi3-longrope")
    assert 6 + NEW_TOKENS > model.config.original_max_position_embeddings  # the long factors take over mid-way


def test_a_transformers_model_without_generation_code_is_rerun_on_the_whole_sequence():
    from transformers import PreTrainedModel

    gpt2 = tiny_model("gpt2")

    class Bare(PreTrainedModel):  # a custom PreTrainedModel: no GenerationMixin, no cache
        config_class = type(gpt2.config)
        _supports_sdpa = True

        def __init__(self, config):
            super().__init__(config)
            self.inner = gpt2

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    bare = Bare(gpt2.config).eval()
    assert not HFAdapter(bare)._generative
    ids, _ = _batch(padded=False)
    expected = gpt2.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD, eos_token_id=EOS,
                             use_cache=False)
    assert torch.equal(generate(bare, ids, max_new_tokens=NEW_TOKENS, pad_token_id=PAD, eos_token_id=EOS), expected)
