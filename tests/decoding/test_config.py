"""Configuration: unknown fields rejected, HF's defaults and length rules applied, unsupported modes refused."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from lightning_gen.decoding.config import for_prompt, generation_fields, settle_config, validate_generation_kwargs

CPU = torch.device("cpu")


def resolve(generation_config=None, model_config=None, prompt_length=4, max_positions=None, **kwargs):
    settled = settle_config(generation_config, kwargs, model_generation_config=model_config)
    return for_prompt(settled, prompt_length=prompt_length, max_position_embeddings=max_positions, device=CPU)


# ---------------------------------------------------------------------------------------- generation_fields
def test_generation_fields_are_the_public_generation_config_fields():
    fields = generation_fields()
    assert {"max_new_tokens", "max_length", "do_sample", "top_k", "top_p", "eos_token_id", "stop_strings"} <= fields
    assert "transformers_version" not in fields
    assert not any(name.startswith("_") for name in fields)


# ---------------------------------------------------------------------------------------- validate_generation_kwargs
def test_validate_applies_hf_defaults():
    cfg = validate_generation_kwargs({"do_sample": True, "top_p": 0.9})
    assert isinstance(cfg, GenerationConfig)
    assert cfg.top_k == 50 and cfg.top_p == 0.9 and cfg.temperature == 1.0 and cfg.max_length == 20
    assert cfg.num_beams == 1 and cfg.do_sample is True


def test_validate_keeps_explicit_values_over_defaults():
    cfg = validate_generation_kwargs({"do_sample": True, "top_k": 0, "max_new_tokens": 7})
    assert cfg.top_k == 0 and cfg.max_new_tokens == 7


def test_validate_unknown_key_names_it_and_suggests_and_names_the_argument():
    with pytest.raises(ValueError) as err:
        validate_generation_kwargs({"max_new_tokens": 5, "top_kk": 3}, argument="generation")
    message = str(err.value)
    assert "'top_kk'" in message and "'top_k'" in message and "`generation`" in message


def test_validate_unknown_key_without_close_match_has_no_suggestion():
    with pytest.raises(ValueError, match="'zzzzzz'") as err:
        validate_generation_kwargs({"zzzzzz": 1})
    assert "did you mean" not in str(err.value)


def test_validate_rejects_non_dict():
    with pytest.raises(TypeError, match="`sampling`.*list"):
        validate_generation_kwargs([("top_k", 3)], argument="sampling")


@pytest.mark.parametrize(("fields", "error", "fragment"), [
    ({"do_sample": True, "top_p": 1.5}, ValueError, "`generation.top_p` must be in (0, 1], got 1.5"),
    ({"do_sample": True, "temperature": float("inf")}, ValueError,
     "`generation.temperature` must be a finite number > 0, got inf"),
    ({"max_new_tokens": 2.5}, TypeError, "`generation.max_new_tokens` must be a positive integer, got 2.5 (float)"),
    ({"top_k": True}, TypeError, "`generation.top_k` must be an integer >= 0, got True (bool)"),
    ({"eos_token_id": [1, -2]}, ValueError,
     "`generation.eos_token_id` must be a non-negative token id or a non-empty list of them, got [1, -2]"),
    ({"pad_token_id": 1.5}, ValueError, "`generation.pad_token_id`"),
    ({"stop_strings": ["ok", ""]}, ValueError, "`generation.stop_strings`"),
    ({"epsilon_cutoff": 1.0}, ValueError, "`generation.epsilon_cutoff` must be in [0, 1), got 1.0"),
])
def test_validate_range_errors_quote_field_and_value(fields, error, fragment):
    with pytest.raises(error) as err:
        validate_generation_kwargs(fields)
    assert fragment in str(err.value)


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"num_beams": 2}, "beam_search"),
    ({"num_beams": 2, "do_sample": True}, "beam_sample"),
    ({"penalty_alpha": 0.6, "top_k": 4}, "contrastive_search"),
    ({"guidance_scale": 1.5}, "guidance_scale"),
])
def test_validate_refuses_search_modes_we_do_not_implement(fields, fragment):
    with pytest.raises(NotImplementedError, match=fragment):
        validate_generation_kwargs(fields)


def test_validate_does_not_modify_its_input():
    fields = {"do_sample": True}
    validate_generation_kwargs(fields)
    assert fields == {"do_sample": True}


# ---------------------------------------------------------------------------------------- settle_config, for_prompt
def test_max_new_tokens_sets_max_length_from_the_prompt():
    assert resolve(prompt_length=7, max_new_tokens=5).config.max_length == 12


def test_default_is_20_new_tokens_capped_by_max_position_embeddings():
    assert resolve(prompt_length=7).config.max_length == 27
    assert resolve(prompt_length=7, max_positions=16).config.max_length == 16


def test_explicit_max_length_is_absolute_and_must_leave_room():
    assert resolve(prompt_length=7, max_length=10).config.max_length == 10
    assert resolve(GenerationConfig(max_length=10), prompt_length=7).config.max_length == 10
    with pytest.raises(ValueError, match="`max_length`.*prompt length 7, got 7"):
        resolve(prompt_length=7, max_length=7)


def test_max_new_tokens_wins_over_max_length():
    assert resolve(prompt_length=3, max_length=100, max_new_tokens=2).config.max_length == 5


def test_min_new_tokens_sets_min_length():
    assert resolve(prompt_length=3, max_new_tokens=9, min_new_tokens=4).config.min_length == 7


def test_precedence_kwargs_then_config_then_model_defaults():
    model_defaults = GenerationConfig(top_k=7, top_p=0.5, temperature=0.3, eos_token_id=9)
    passed = GenerationConfig(top_k=11, do_sample=True)
    cfg = resolve(passed, model_defaults, max_new_tokens=3, temperature=0.9).config
    assert (cfg.top_k, cfg.top_p, cfg.temperature, cfg.eos_token_id) == (11, 0.5, 0.9, 9)
    assert passed.max_new_tokens is None and passed.temperature is None  # the caller's config is not touched


def test_model_max_length_is_not_the_implicit_default():
    # A model whose generation_config sets max_length=12 means 12 in total, as in HF.
    assert resolve(model_config=GenerationConfig(max_length=12), prompt_length=4).config.max_length == 12


def test_special_tokens_become_tensors_and_pad_falls_back_to_first_eos():
    resolved = resolve(max_new_tokens=2, eos_token_id=[5, 3])
    assert resolved.eos.tolist() == [5, 3] and int(resolved.pad) == 5
    resolved = resolve(max_new_tokens=2, eos_token_id=4, pad_token_id=0)
    assert resolved.eos.tolist() == [4] and int(resolved.pad) == 0
    resolved = resolve(max_new_tokens=2)
    assert resolved.eos is None and resolved.pad is None


def test_resolve_rejects_unknown_kwargs_and_wrong_config_type():
    with pytest.raises(ValueError, match="`generate` got an unknown GenerationConfig field 'max_tokens'"):
        resolve(max_tokens=3)
    with pytest.raises(TypeError, match="`generation_config`.*dict"):
        resolve({"max_new_tokens": 3})


@pytest.mark.parametrize(("use_cache", "cached"), [(None, True), (True, True), (False, False)])
def test_use_cache_none_leaves_the_cache_on_as_hf_does(use_cache, cached):
    """HF hands ``use_cache=None`` to the model, whose default caches: `generate`, `generate_completions` and the
    monitor's rounds all read this one answer."""
    assert settle_config(None, {"use_cache": use_cache}).use_cache is cached
