"""Tiny random configs for the decoder-only causal LMs of transformers, and which of them are not tested and why.

``tiny_config(name)`` builds an architecture's own config made tiny (2 layers, width 32, 96 tokens): the shared
sizes of `_TINY` are set wherever the config has the field, `_CONSTRUCT` gives the few configs whose
``__post_init__`` derives a layer pattern or head sizes the arguments they need, and `_EXTRA` sets what an
architecture names its own way (a dotted key reaches into a sub-config).

Which causal LMs count as decoder-only: every name of transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` is
either in `ARCHITECTURES` (tested) or in `NOT_TESTED` with its reason. Not tested: decoders of encoder-decoder
models (``is_encoder_decoder``), BERT-family encoders (a causal LM only with ``is_decoder=True``), multimodal
models (vision, audio or image-token sub-configs), assistant (draft) models that need a target model's states,
other names for a tested model class, and what transformers' own ``generate`` cannot run (`HF_FAILS`). The tests
check each reason against the config, the model class, or by running it.
"""

from __future__ import annotations

import warnings

from tiny import seeded
from transformers import AutoConfig, AutoModelForCausalLM

VOCAB, PAD, EOS, BOS = 96, 0, 1, 2
TABLES_VERSION = "5.25.0"  # the transformers these tables were made against: there every tested case must run

ARCHITECTURES = [
    "afmoe", "apertus", "apertus1p5_text", "arcee", "aria_text", "axk1", "axk2", "bailing_hybrid", "bamba", "beam",
    "biogpt", "bitnet", "bloom", "codegen", "cohere", "cohere2", "cohere2_moe", "cohere_compass_text", "cpmant", "ctrl",
    "cwm", "dbrx", "deepseek_v2", "deepseek_v3", "deepseek_v32", "deepseek_v4", "diffllama", "doge", "dory", "dots1",
    "dots3_note_text", "ergo", "ernie4_5", "ernie4_5_moe", "exaone", "exaone4", "exaone_moe", "falcon", "falcon_h1",
    "falcon_mamba", "flex_olmo", "flint", "gemma", "gemma2", "gemma3_text", "gemma3n_text", "gemma4_text",
    "gemma4_unified_text", "glm", "glm4", "glm4_moe", "glm4_moe_lite", "glm_moe_dsa", "gpt2", "gpt_bigcode", "gpt_neo",
    "gpt_neox", "gpt_neox_japanese", "gpt_oss", "gptj", "granite", "granite_swa", "granitemoe", "granitemoe_swa",
    "granitemoehybrid", "granitemoeshared", "helium", "hrm_text", "hunyuan_v1_dense", "hunyuan_v1_moe", "hy_v3",
    "hy_v4", "hyperclovax", "inkling2_loop_text", "inkling2_text", "inkling_text", "internlm3", "jais2", "jamba",
    "jetmoe", "kimi_linear", "kolibri1", "kolibri1_1", "laguna", "lara_mini", "lfm2", "lfm2_moe", "lfm3", "llama",
    "llama4_text", "longcat_flash", "mamba", "mamba2", "mellum", "mimo_v2_flash", "minicpm3", "minicpm5_moe", "minimax",
    "minimax_m2", "minimax_m3_vl_text", "ministral", "ministral3", "mistral", "mixtral", "modernbert-decoder", "mpt",
    "nanochat", "nemotron", "nemotron_h", "olmo", "olmo2", "olmo3", "olmo_hybrid", "olmoe", "openai-gpt", "opt",
    "persimmon", "phi", "phi3", "phimoe", "qwen2", "qwen2_moe", "qwen3", "qwen3_5_moe_text", "qwen3_5_text",
    "qwen3_moe", "qwen3_next", "qwen4_exp_text", "recurrent_gemma", "reformer", "rwkv", "seed_oss", "smollm3",
    "solar_open", "stablelm", "starcoder2", "trocr", "vaultgemma", "xglm", "xlm", "xlnet", "xlstm", "youtu", "zamba",
    "zamba2", "zaya",
]

# Why a causal LM of transformers is not in the matrix; `test_each_reason_not_to_test_is_true` checks each kind.
ENCODER_DECODER = ("the decoder of an encoder-decoder model (`is_encoder_decoder=True`): it generates from encoder "
                   "states")
ENCODER = ("a bidirectional encoder (BERT family): its causal-LM head is the encoder run with `is_decoder=True`, "
           "which its config defaults to False")
MULTIMODAL = "multimodal: its config holds vision, audio or image-token sub-configs"
ASSISTANT = ("a draft model for transformers' assisted generation: its forward ignores `input_ids` and needs the "
             "target model's `inputs_embeds` and `shared_kv_states`")
ALIAS = "another name for the model class of `{}`, which is tested"

NOT_TESTED: dict[str, str] = {
    **dict.fromkeys(("bart", "bigbird_pegasus", "blenderbot", "blenderbot-small", "marian", "mbart", "musicgen",
                     "musicgen_melody", "mvp", "pegasus", "plbart", "prophetnet", "whisper"), ENCODER_DECODER),
    **dict.fromkeys(("bert", "bert-generation", "big_bird", "camembert", "data2vec-text", "electra", "ernie",
                     "megatron-bert", "rembert", "roberta", "roberta-prelayernorm", "roc_bert", "roformer",
                     "xlm-roberta", "xlm-roberta-xl", "xmod"), ENCODER),
    **dict.fromkeys(("dots3_note", "emu3", "gemma3", "gemma3n", "gemma4", "gemma4_unified", "git", "got_ocr2",
                     "llama4", "mllama", "moshi", "moss_transcribe_diarize", "phi4_multimodal", "qwen3_5",
                     "qwen3_5_moe", "qwen4_exp"), MULTIMODAL),
    "fuyu": ("multimodal: image patches go straight into its decoder (`patch_size`); its text model, Persimmon, is "
             "tested"),
    **dict.fromkeys(("gemma4_assistant", "gemma4_unified_assistant"), ASSISTANT),
    "gpt-sw3": ALIAS.format("gpt2"), "iquestcoder": ALIAS.format("llama"), "sarvam_mla": ALIAS.format("deepseek_v3"),
    "sarvam_moe": ALIAS.format("glm4_moe"), "param2moe": ALIAS.format("glm4_moe"),
    "blt": ("transformers' own generate raises AttributeError: `_prepare_cache_for_generation` builds a "
            "`DynamicCache` from `BltConfig`, which has no `num_hidden_layers`"),
}
# The architectures of `NOT_TESTED` that transformers cannot run, with the error its `generate` raises.
HF_FAILS = {"blt": (AttributeError, "num_hidden_layers")}

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

# Multi-head latent attention (DeepSeek-V2 and its descendants): its own head sizes, RoPE on all of `qk_rope`.
_MLA = dict(kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, head_dim=4,
            num_key_value_heads=4, partial_rotary_factor=1.0)
_MLA_MODELS = ("axk1", "axk2", "bailing_hybrid", "deepseek_v2", "deepseek_v3", "deepseek_v32", "glm4_moe_lite",
               "glm_moe_dsa", "hy_v4", "longcat_flash", "minicpm3", "youtu")
_MAMBA2 = dict(mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1, mamba_d_state=8, mamba_chunk_size=16)
_HYBRID = ["linear_attention", "hybrid"]  # Zamba's: a Mamba layer, then one with the shared attention block

_GEMMA4 = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, global_head_dim=16, vocab_size=VOCAB,
               vocab_size_per_layer_input=VOCAB, hidden_size_per_layer_input=8, sliding_window=16,
               layer_types=["sliding_attention", "full_attention"])  # per-layer head sizes: set at construction

# Arguments for the config's constructor, where its `__post_init__` derives head sizes or a layer pattern.
_CONSTRUCT: dict[str, dict] = {
    **{name: _MLA for name in _MLA_MODELS},
    "blt": dict(vocab_size=VOCAB, patch_size=2, patching_mode="entropy", local_attention_window_len=16,
                encoder_hash_byte_group_size=[3], encoder_hash_byte_group_vocab=64,
                patcher_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                    vocab_size=VOCAB, max_position_embeddings=128),
                encoder_config=dict(hidden_size=32, hidden_size_global=64, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=128),
                decoder_config=dict(hidden_size=32, hidden_size_global=64, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=128),
                global_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                                   max_position_embeddings=128)),
    "cohere_compass_text": dict(num_hidden_layers=2, rope_parameters={
        kind: {"rope_type": "default", "rope_theta": 10000.0} for kind in ("full_attention", "sliding_attention")}),
    "dbrx": dict(d_model=32, attn_config=dict(kv_n_heads=2, clip_qkv=8.0),
                 ffn_config=dict(ffn_hidden_size=64, moe_num_experts=4, moe_top_k=2)),
    "dory": dict(num_hidden_layers=3, n_input_layers=1, n_output_layers=1,  # input, recurrent, output
                 layer_types=["sliding_attention", "sliding_attention", "full_attention"]),
    "dots3_note_text": dict(_MLA, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            mlp_layer_types=["dense", "sparse"], layer_types=["sliding_attention", "indexed_attention"],
                            index_topk=4, index_head_dim=8, index_n_heads=2, swa_num_attention_heads=4,
                            swa_num_key_value_heads=4, swa_q_lora_rank=16, swa_kv_lora_rank=16, swa_head_dim=8,
                            swa_qk_nope_head_dim=4, swa_v_head_dim=8, rope_parameters={
                                kind: {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 1.0}
                                for kind in ("sliding_attention", "indexed_attention")}),
    "gemma3n_text": dict(num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"],
                         num_kv_shared_layers=0, activation_sparsity_pattern=[0.0, 0.0]),
    "gemma4_text": _GEMMA4,
    "gemma4_unified_text": _GEMMA4,
    "hrm_text": dict(num_hidden_layers=1, H_cycles=1, L_cycles=1),  # 1 layer a stack, 2 stacks
    "kimi_linear": dict(_MLA, num_hidden_layers=2, layer_types=["linear_attention", "full_attention"]),
    # Its indexer rounds keys to NVFP4 in blocks of 16 (head_dim a multiple of 16); one layer reads its own keys,
    # the other is indexed.
    "kolibri1_1": dict(num_hidden_layers=2, layer_types=["sliding_attention", "indexed_attention"],
                       kv_source_layers=[0, 1], index_layers=[1], head_dim=16, index_num_heads=2, index_topk=8,
                       index_compression=4, index_num_local_tokens=4, index_num_sink_tokens=2, index_pool_size=64),
    "zamba2": dict(hidden_size=32, num_hidden_layers=2, layers_block_type=_HYBRID, num_attention_heads=4,
                   n_mamba_heads=4),
}

# What an architecture needs beyond `_TINY` (its own names for the sizes); "a.b" sets `b` of sub-config `a`.
_EXTRA = {
    **{name: _MLA for name in _MLA_MODELS},
    "bamba": dict(_MAMBA2, attn_layer_indices=[1]),
    "dbrx": {"attn_config.rope_theta": 10000.0},  # DbrxAttention reads it, DbrxAttentionConfig lacks it
    "dory": dict(num_hidden_layers=3),
    "dots3_note_text": _MLA,
    "falcon_h1": dict(_MAMBA2, mamba_d_ssm=64),
    "gemma3n_text": dict(intermediate_size=[64, 64], laurel_rank=4, hidden_size_per_layer_input=8,
                         vocab_size_per_layer_input=VOCAB, altup_num_inputs=2),
    "granitemoehybrid": dict(_MAMBA2, layer_types=["linear_attention", "full_attention"],
                             shared_intermediate_size=32),
    "inkling2_loop_text": dict(unpadded_vocab_size=VOCAB),
    "inkling2_text": dict(unpadded_vocab_size=VOCAB),
    "jamba": dict(attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                  mamba_d_state=8, mamba_dt_rank=4, mamba_expand=2),
    "kimi_linear": dict(_MLA, linear_head_dim=8, linear_num_heads=4, mlp_layer_types=["dense", "sparse"],
                        num_experts_per_token=2),
    "kolibri1_1": dict(head_dim=16),
    "lfm2": dict(layer_types=["conv", "full_attention"]),  # its default is attention only
    "lfm2_moe": dict(layer_types=["conv", "full_attention"]),
    "mamba2": dict(num_heads=8, head_dim=8, n_groups=1, chunk_size=16),
    "nemotron_h": dict(mamba_num_heads=4, mamba_head_dim=16, ssm_state_size=8, n_groups=1, chunk_size=16,
                       moe_shared_expert_intermediate_size=32),
    "qwen4_exp_text": dict(indexer_n_heads=2, indexer_kv_heads=1, indexer_head_dim=8, indexer_budget=8,
                           indexer_compress_ratio=2, hc_lowrank=8),
    "recurrent_gemma": dict(block_types=["recurrent", "attention"], lru_width=32, num_key_value_heads=1),
    # A causal LM that asserts `is_decoder=True` (unlike the BERT family, Reformer was released as one). Local
    # attention only: LSH layers draw their hash rotations from the global RNG that transformers' sampling also
    # draws from, so no private generator can match a sampled run.
    "reformer": dict(is_decoder=True, attn_layers=["local", "local"], axial_pos_shape=(8, 16),
                     axial_pos_embds_dim=(16, 16), attention_head_size=8, feed_forward_size=64,
                     local_attn_chunk_length=8, lsh_attn_chunk_length=8, num_buckets=4),
    "xlstm": dict(num_heads=4, qk_dim_factor=2.0, v_dim_factor=2.0),  # its cache rounds q/k/v widths up to 64
    "zamba": dict(layer_types=_HYBRID, attention_hidden_size=64, head_dim=16, n_mamba_heads=2, mamba_d_state=8,
                  mamba_dt_rank=4),  # the shared attention block reads [hidden, embeddings]: twice the width
    "zamba2": dict(attention_hidden_size=64, head_dim=16, mamba_d_state=8, chunk_size=16, adapter_rank=8),
}


def _set(config, key: str, value) -> None:
    *path, field = key.split(".")
    for part in path:
        config = getattr(config, part)
    if field in (getattr(config, "per_layer_attributes", None) or ()):
        return  # a heterogeneous config: per-layer sizes come from its constructor (`_CONSTRUCT`)
    if hasattr(config, field) or path:
        try:
            setattr(config, field, value)
        except (AttributeError, NotImplementedError):  # a derived property, or one the config refuses
            pass


def tiny_config(name: str):
    """The config of architecture `name` made tiny, with random weights to come (nothing is downloaded)."""
    config = AutoConfig.for_model(name, **_CONSTRUCT.get(name, {}))
    for key, value in {**_TINY, **_EXTRA.get(name, {})}.items():
        _set(config, key, value)
    types = getattr(config, "layer_types", None)
    if types is not None and len(types) != config.num_hidden_layers:
        kinds = list(dict.fromkeys(types))  # in order of first use: linear or sliding first, then full
        try:  # hybrids: one layer of the first kind, one of the last
            config.layer_types = [kinds[0], kinds[-1]]
        except AttributeError:
            pass
    return config


def long_rope_phi3_config():
    """Phi-3 with long-RoPE whose original context (8) a prompt of 6 plus 8 new tokens crosses."""
    config = tiny_config("phi3")
    half = config.hidden_size // config.num_attention_heads // 2
    config.original_max_position_embeddings = 8
    config.rope_parameters = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 1.0,
                              "short_factor": [1.0] * half, "long_factor": [1.0 + 3 * i for i in range(half)],
                              "original_max_position_embeddings": 8}
    config.partial_rotary_factor = 1.0
    return config


def tiny_model(name: str):
    """Architecture `name` (or ``"phi3-longrope"``: `long_rope_phi3_config`) from its tiny config, with weights from
    seed 0 (the global RNG left as it was), in eval mode."""
    config = long_rope_phi3_config() if name == "phi3-longrope" else tiny_config(name)
    with seeded(0), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_config(config).eval()
