"""Every decoder-only causal LM transformers ships: ``generate`` is token-identical to ``model.generate``: greedy
and sampling on a batch, greedy on a left-padded batch.

Each model is built from its own config made tiny (`hf_tiny_configs.py`: 2 layers, width 32, 96 tokens; random
weights, nothing is downloaded). Every name of transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` is tested or in
``NOT_TESTED`` with a reason checked here (encoder-decoder, multimodal, BERT-family encoder, assistant model,
alias, or an error transformers' own ``generate`` raises). The cases that need transformers' own generation code
rather than a copy of it are here: RWKV's ``state``, Mamba and FalconMamba on a left-padded batch (the mask dropped
at decode steps), OpenAI-GPT, MiniMax and xLSTM (no default `DynamicCache`), Phi-3 with long-RoPE crossing
``original_max_position_embeddings`` (the prompt re-run with the long factors), hybrids of attention with linear
attention, Mamba or convolutions (Qwen3-Next, LFM2, Nemotron-H, Jamba, Zamba, Bamba, Kimi-Linear, RecurrentGemma),
multi-head latent attention (DeepSeek-V2/V3 and descendants) and heterogeneous per-layer configs (Gemma 4).
On the transformers the tables were made for, transformers' ``generate`` failing on a tested case is a failure
(a config to fix); on another version it is a skip naming the error.
"""

from __future__ import annotations

import functools
import warnings

import hf_tiny_configs
import pytest
import torch
from hf_tiny_configs import (
    ALIAS,
    ARCHITECTURES,
    ASSISTANT,
    ENCODER,
    ENCODER_DECODER,
    EOS,
    HF_FAILS,
    MULTIMODAL,
    NOT_TESTED,
    PAD,
    TABLES_VERSION,
    VOCAB,
    tiny_config,
)
from transformers import AutoConfig

from lightning_gen import generate
from lightning_gen.decoding.adapters import HFAdapter

NEW_TOKENS = 8


tiny_model = functools.cache(hf_tiny_configs.tiny_model)  # one model per architecture for the whole module


def _batch(padded: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    if not padded:
        return ids, None
    mask = torch.ones_like(ids)
    ids[0, :2], mask[0, :2] = PAD, 0  # row 0 is 4 tokens, left-padded
    return ids, mask


class TransformersFails(Exception):
    """transformers' own ``generate`` raised (the cause): a case it cannot run, not a failure of ours."""


def _theirs_and_ours(model, case: str, padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.generate`` and our `generate` on the same batch, options and seed (ours never drawing from the global
    RNG)."""
    ids, mask = _batch(padded)
    options = dict(CASES[case], max_new_tokens=NEW_TOKENS, pad_token_id=PAD, eos_token_id=EOS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(7)
        try:
            expected = model.generate(ids, attention_mask=mask, **options)
        except Exception as err:  # noqa: BLE001 - transformers itself cannot run this case
            raise TransformersFails from err
        torch.manual_seed(123)
        ours = generate(model, ids, attention_mask=mask, generator=torch.Generator().manual_seed(7), **options)
    return expected, ours


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
    try:
        expected, ours = _theirs_and_ours(model, case, padded)
    except TransformersFails as failure:
        err = failure.__cause__
        if __version__ == TABLES_VERSION:  # the tables were made to run here: a failure is a config bug
            raise AssertionError(f"transformers' own generate fails for {name}: move it to NOT_TESTED with "
                                 f"this reason, or fix its tiny config") from err
        pytest.skip(f"transformers' own generate fails for {name} ({case}, {'padded' if padded else 'batch'}) on "
                    f"the CPU: {type(err).__name__}: {err}")
    assert torch.equal(ours, expected)


HYBRIDS = ("bailing_hybrid", "bamba", "granitemoehybrid", "jamba", "kimi_linear", "lara_mini", "lfm2", "lfm2_moe",
           "lfm3", "minimax", "olmo_hybrid", "qwen3_5_moe_text", "qwen3_5_text", "qwen3_next", "qwen4_exp_text",
           "recurrent_gemma", "zamba", "zamba2")


@pytest.mark.parametrize("name", HYBRIDS)
def test_a_tiny_hybrid_keeps_both_kinds_of_layer(name: str) -> None:
    config = tiny_config(name)
    kinds = getattr(config, "layer_types", None) or config.layers_block_type
    assert len(kinds) == 2 and len(set(kinds)) == 2, kinds


def test_the_matrix_covers_at_least_forty_architectures_and_the_special_cases():
    assert len(set(ARCHITECTURES)) >= 40
    assert {"rwkv", "mamba", "falcon_mamba", "openai-gpt", "minimax", "xlstm", "phi3"} <= set(ARCHITECTURES)
    assert {"deepseek_v2", "deepseek_v3", "dbrx", "zamba", "zamba2", "bamba", "granitemoehybrid", "kimi_linear",
            "recurrent_gemma", "lfm2_moe", "gemma3n_text", "falcon_h1"} <= set(ARCHITECTURES)
    model = tiny_model("phi3-longrope")
    assert 6 + NEW_TOKENS > model.config.original_max_position_embeddings  # the long factors take over mid-way


def _causal_lms() -> dict[str, str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return dict(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def _unclaimed() -> list[str]:
    """Causal LMs of the installed transformers in neither `ARCHITECTURES` nor `NOT_TESTED` (a newer release's)."""
    return sorted(set(_causal_lms()) - set(ARCHITECTURES) - set(NOT_TESTED))


def test_on_the_tables_version_every_causal_lm_is_tested_or_says_why_not():
    from transformers import __version__

    if __version__ != TABLES_VERSION:
        pytest.skip(f"the tables were made on transformers {TABLES_VERSION}; {__version__}'s new architectures are "
                    "tried by the test below")
    assert not _unclaimed(), ("causal LMs in neither ARCHITECTURES nor NOT_TESTED (tests/decoding/"
                              f"hf_tiny_configs.py): {_unclaimed()}")


@pytest.mark.parametrize("name", _unclaimed() or ["(none)"])
def test_an_architecture_the_tables_do_not_know_is_tried_with_the_generic_tiny_config(name: str) -> None:
    """A release newer than the tables adds architectures the project never claimed: each is built from the
    generic tiny config and compared with its own ``model.generate``, or skipped with the reason it could not be."""
    from transformers import __version__

    if name == "(none)":
        pytest.skip(f"every causal LM of transformers {__version__} is in ARCHITECTURES or NOT_TESTED")
    try:
        model = tiny_model(name)
    except Exception as err:  # noqa: BLE001 - a config the generic sizes do not fit: not ours to claim
        pytest.skip(f"{name} (new in transformers {__version__}) does not build from the generic tiny config: "
                    f"{type(err).__name__}: {err}")
    for case, padded in (("greedy", False), ("sampling", False), ("greedy", True)):
        try:
            expected, ours = _theirs_and_ours(model, case, padded)
        except TransformersFails as failure:
            err = failure.__cause__
            pytest.skip(f"transformers' own generate fails for {name} (new in {__version__}): "
                        f"{type(err).__name__}: {err}")
        if not torch.equal(ours, expected):
            pytest.xfail(f"{name} (new in transformers {__version__}, not claimed) differs from model.generate "
                         f"({case}{', padded' if padded else ''}): give it a tiny config in ARCHITECTURES and fix")


def test_tested_and_not_tested_are_disjoint_and_unique():
    assert not set(ARCHITECTURES) & set(NOT_TESTED)
    assert len(ARCHITECTURES) == len(set(ARCHITECTURES))


def test_each_reason_not_to_test_is_true():
    import inspect

    import transformers

    classes = _causal_lms()
    for name, reason in NOT_TESTED.items():
        if name not in classes or name in HF_FAILS:
            continue  # another transformers version; or checked by running it, below
        if reason == ASSISTANT:  # (its default config does not even validate)
            assert "shared_kv_states" in inspect.signature(getattr(transformers, classes[name]).forward).parameters
            continue
        config = AutoConfig.for_model(name)
        sub_configs = " ".join(getattr(config, "sub_configs", {}))
        if reason == ENCODER_DECODER:
            assert config.is_encoder_decoder, name
        elif reason == ENCODER:
            assert config.is_decoder is False, name  # and it looks ahead: below
        elif reason == MULTIMODAL:
            assert any(kind in sub_configs for kind in ("vision", "audio", "vq")), name
        elif reason.startswith(ALIAS.split("{")[0]):
            tested = reason.split("`")[1]
            assert classes[name] == classes[tested] and tested in ARCHITECTURES, name
        elif name == "fuyu":
            assert hasattr(config, "patch_size") and config.text_config.model_type == "persimmon"
        else:
            raise AssertionError(f"no check for the reason given for {name}: {reason}")


@pytest.mark.parametrize("name", sorted(name for name, reason in NOT_TESTED.items() if reason == ENCODER))
def test_an_encoder_said_not_to_be_a_decoder_looks_ahead(name: str) -> None:
    """With the config it ships, the first position's logits change with the last token: not a causal LM."""
    if name not in _causal_lms():
        pytest.skip(f"this transformers does not have {name}")
    model = tiny_model(name)
    if getattr(model.config, "languages", None):  # X-MOD: one adapter per language
        model.set_default_language(model.config.languages[0])
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 9]])
    with torch.no_grad():
        first = model(ids).logits[:, 0]  # (2, V)
    assert not torch.allclose(first[0], first[1])


@pytest.mark.parametrize("name", sorted(HF_FAILS))
def test_transformers_still_cannot_generate_with_the_architectures_said_to_fail(name: str) -> None:
    """When a transformers release fixes one, this fails: move it to `ARCHITECTURES`."""
    if name not in _causal_lms():
        pytest.skip(f"this transformers does not have {name}")
    error, message = HF_FAILS[name]
    ids, _ = _batch(padded=False)
    with pytest.raises(error, match=message), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny_model(name).generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=PAD, eos_token_id=EOS)


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
