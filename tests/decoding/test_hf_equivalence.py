"""Token-for-token equivalence of ``lightning_gen.generate`` with ``transformers``' ``model.generate``.

Every case runs on two tiny random HF models (GPT-2, Llama; see conftest.py) along three paths:

* ``cache``: ``generate(hf_model, ...)``, which uses the model's own KV cache, against HF's default
  ``use_cache=True`` loop. Special tokens come from ``hf_model.generation_config`` (pad=0, eos=1).
* ``plain``: ``generate(PlainLM(hf_model), ...)``, a bare ``nn.Module`` re-run on the whole sequence
  each step, against HF's ``use_cache=False`` loop. A plain module has no generation config, so its
  special tokens are passed explicitly.
* ``hf_no_cache``: ``generate(hf_model, ..., use_cache=False)`` against the same HF loop.

HF samples from the global RNG, ours only from ``generator``; both are seeded with the same value and
the global RNG is re-seeded to something else before our call, so ours touching it would show.
Assertions are exact (``torch.equal``; ``test_scores_bitwise_identical`` also compares every step's
float32 scores bit for bit). Ids that must be ones the random model really emits (EOS ids, bad words,
suppressed tokens, stop strings) are derived from an HF probe run, and guards check that each case
changes HF's own output and that EOS cases really stop rows early, so no case can pass vacuously.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from tiny import EOS_ID, FIRST_REGULAR_ID, PAD_ID, VOCAB_SIZE
from torch import nn
from transformers import (
    EosTokenCriteria,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    MaxLengthCriteria,
    PreTrainedModel,
    RepetitionPenaltyLogitsProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from lightning_gen.decoding import _sampler
from lightning_gen.decoding.processors import penalty_skips_padding

MODELS = ("gpt2", "llama")
PATHS = ("cache", "plain", "hf_no_cache")
PROMPT_LEN = 6
MAX_NEW = 10
SEED = 1234


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
@pytest.fixture(params=["shortcuts", "hf"])
def sampling(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each equivalence test runs twice, whatever ``LIGHTNING_GEN_FAST_PATH`` says: with the sampling shortcuts on
    every step, also the tiny models' small ones (which take HF's own route in normal use), and with them switched
    off, as ``LIGHTNING_GEN_FAST_PATH=0`` does: HF's processor list and ``torch.multinomial`` at every step."""
    monkeypatch.setattr(_sampler, "ENABLED", request.param == "shortcuts")
    monkeypatch.setattr(_sampler, "_MIN_NUMEL", 0)
    return request.param


class PlainLM(nn.Module):
    """A "plain" model: forward(ids) -> last-position logits (B, 1, V), like nanoGPT at inference."""

    def __init__(self, hf: PreTrainedModel) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # logits_to_keep=1 is what HF's own use_cache=False loop passes.
        return self.hf(input_ids=ids, use_cache=False, logits_to_keep=1).logits


class PlainFullLM(nn.Module):
    """A plain model returning logits for every position (B, T, V)."""

    def __init__(self, hf: PreTrainedModel) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=ids, use_cache=False).logits


def _prompts(batch: int = 3, length: int = PROMPT_LEN, seed: int = 7) -> torch.LongTensor:
    # (B, T); no pad/eos/bos ids, see conftest.FIRST_REGULAR_ID.
    g = torch.Generator().manual_seed(seed)
    return torch.randint(FIRST_REGULAR_ID, VOCAB_SIZE, (batch, length), generator=g)


def _hf_generate(hf: PreTrainedModel, ids: torch.Tensor, *, use_cache: bool, seed: int = SEED, **kw: Any):
    torch.manual_seed(seed)
    return hf.generate(ids, use_cache=use_cache, **kw)


def _our_generate(model: nn.Module, ids: torch.Tensor, *, seed: int = SEED, **kw: Any) -> torch.Tensor:
    from lightning_gen import generate

    # A different global seed: if ours drew from the global RNG instead of `generator`, it would diverge.
    torch.manual_seed(seed + 99991)
    return generate(model, ids, generator=torch.Generator().manual_seed(seed), **kw)


def _for_path(path: str, hf: PreTrainedModel, kw: dict[str, Any]) -> tuple[bool, nn.Module, dict[str, Any]]:
    """(HF's use_cache, the model we call, our kwargs) for one path.

    cache: the HF model and its KV cache vs HF's default loop. plain: a bare module re-run on the whole
    sequence vs HF's use_cache=False loop. hf_no_cache: the HF model with use_cache=False on both sides.
    """
    if path == "cache":
        return True, hf, kw
    if path == "plain":
        return False, PlainLM(hf), {**_plain_special_tokens(hf), **kw}
    if path == "hf_no_cache":
        return False, hf, {**kw, "use_cache": False}
    raise AssertionError(path)


def _plain_special_tokens(hf: PreTrainedModel) -> dict[str, Any]:
    # What HF reads from hf.generation_config; a plain module has none, so it is passed explicitly.
    gc = hf.generation_config
    return {"eos_token_id": gc.eos_token_id, "pad_token_id": gc.pad_token_id, "bos_token_id": gc.bos_token_id}


def _as_list(x: int | list[int] | None) -> list[int]:
    if x is None:
        return []
    return [x] if isinstance(x, int) else list(x)


def _stop_steps(new_tokens: torch.Tensor, eos_ids: list[int]) -> list[int | None]:
    """Per row, the step of the first EOS among the new tokens (B, N), or None."""
    hit = torch.isin(new_tokens, torch.tensor(eos_ids))
    return [int(row.nonzero()[0]) if row.any() else None for row in hit]


def _assert_stops_early(out: torch.Tensor, prompt_len: int, max_new: int, eos_ids: list[int], pad_id: int,
                        all_rows: bool = False) -> None:  # fmt: skip
    """Design guard: some row ends on EOS before the last step and is pad-filled, rows stop at different steps."""
    new = out[:, prompt_len:]
    steps = _stop_steps(new, eos_ids)
    early = [(r, s) for r, s in enumerate(steps) if s is not None and s < max_new - 1]
    assert early, f"no row hit EOS {eos_ids} before step {max_new - 1}; new tokens:\n{new}"
    for r, s in early:
        assert (new[r, s + 1 :] == pad_id).all(), f"row {r} not pad-filled after EOS at step {s}:\n{new}"
    assert len(set(steps)) > 1, f"all rows stopped at the same step {steps}; the case cannot tell rows apart"
    if all_rows:
        assert None not in steps and out.shape[1] < prompt_len + max_new, (
            f"expected every row to stop so the output is shorter than {prompt_len + max_new}: steps {steps}"
        )


class BanLastToken(LogitsProcessor):
    """A user processor that depends on input_ids: forbid repeating the previous token."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.scatter(1, input_ids[:, -1:], float("-inf"))  # (B, V), not in place


class Recorder(LogitsProcessor):
    """Records what reaches the user processors at each step: ``(input_ids, scores)``; changes nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.calls.append((input_ids.clone(), scores.clone()))
        return scores


def _assert_same_calls(ours: Recorder, ref: Recorder) -> None:
    """Bitwise: the same number of steps, the same ids, scores of the same dtype and the same bits."""
    assert len(ours.calls) == len(ref.calls), f"{len(ours.calls)} processor calls, HF made {len(ref.calls)}"
    for step, ((our_ids, our_scores), (ref_ids, ref_scores)) in enumerate(zip(ours.calls, ref.calls)):
        assert torch.equal(our_ids, ref_ids), f"step {step}: input_ids differ\nours:\n{our_ids}\nHF:\n{ref_ids}"
        assert our_scores.dtype == ref_scores.dtype, f"step {step}: {our_scores.dtype} scores, HF {ref_scores.dtype}"
        if not torch.equal(our_scores, ref_scores):
            diff = (our_scores - ref_scores).nan_to_num().abs().max().item()
            raise AssertionError(f"step {step}: scores differ from HF's (max abs diff {diff:.3g})")


class StopBelow(StoppingCriteria):
    """A user criterion: a row is done once it emits an id below ``threshold`` (no ``eos_token_id`` attribute)."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return input_ids[:, -1] < self.threshold


# --------------------------------------------------------------------------------------------------
# The case matrix
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One generate() configuration.

    kwargs: GenerationConfig fields passed to both generate calls.
    derive: builds extra kwargs from the new tokens (B*n, N) of an HF probe run of ``kwargs`` (cache
        path, same seed, EOS disabled), for ids that must be ones the random model really emits.
    user_processors: builds a ``logits_processor=`` list.
    user_criteria: builds a ``stopping_criteria=`` list.
    baseline: kwargs (plus max_new_tokens) of an HF run this case must differ from; None: no such guard.
    stops: "some" / "all" rows must end early on EOS (guard), or None.
    length_kwargs: if False, no max_new_tokens is added (case sets its own length or uses HF's default).
    """

    kwargs: dict[str, Any]
    derive: Callable[[torch.Tensor], dict[str, Any]] | None = None
    user_processors: Callable[[], list[LogitsProcessor]] | None = None
    user_criteria: Callable[[], list[StoppingCriteria]] | None = None
    baseline: dict[str, Any] | None = None
    stops: str | None = None
    length_kwargs: bool = True
    seed: int = SEED


GREEDY: dict[str, Any] = {}
SAMPLE: dict[str, Any] = {"do_sample": True}


def _distinct(ids: list[int]) -> list[int]:
    out: list[int] = []
    for i in ids:
        if i not in out and i != PAD_ID:
            out.append(i)
    return out


def _repeated_ngram_size(new: torch.Tensor) -> dict[str, Any]:
    """The longest n (3 at most) such that a row of the greedy run repeats an n-gram, so that banning repeats of
    that size changes the output (which sizes repeat depends on the random model, and so on the release)."""
    for n in (3, 2, 1):
        for row in new.tolist():
            grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
            if len(grams) != len(set(grams)):
                return {"no_repeat_ngram_size": n}
    return {"no_repeat_ngram_size": 1}


CASES: dict[str, Case] = {
    "greedy": Case(GREEDY, baseline=None),
    "greedy_default_length": Case(GREEDY, baseline=None, length_kwargs=False),  # HF: max_length=20 (+prompt)
    "max_length": Case({"max_length": PROMPT_LEN + 8}, baseline=None, length_kwargs=False),
    "max_new_tokens_beats_max_length": Case({"max_length": PROMPT_LEN + 3}, baseline=None),
    "repetition_penalty": Case({"repetition_penalty": 1.8}, baseline=GREEDY),
    "no_repeat_ngram_size": Case(GREEDY, derive=_repeated_ngram_size, baseline=GREEDY),
    "sample_default_top_k": Case(SAMPLE, baseline=None),  # HF's implicit top_k=50 applies
    # Flattened by temperature, so tokens outside the implicit top-50 really get drawn without it.
    "sample_hot_default_top_k": Case(
        {"do_sample": True, "temperature": 3.0}, baseline={"do_sample": True, "temperature": 3.0, "top_k": 0}
    ),
    "temperature": Case({"do_sample": True, "temperature": 0.6}, baseline=SAMPLE),
    "top_k": Case({"do_sample": True, "top_k": 5}, baseline=SAMPLE),
    "top_p": Case({"do_sample": True, "top_p": 0.8, "top_k": 0}, baseline=SAMPLE),
    "min_p": Case({"do_sample": True, "min_p": 0.1}, baseline=SAMPLE),
    "typical_p": Case({"do_sample": True, "typical_p": 0.5, "top_k": 0}, baseline=SAMPLE),
    "epsilon_cutoff": Case({"do_sample": True, "epsilon_cutoff": 0.02, "top_k": 0}, baseline=SAMPLE),
    "eta_cutoff": Case({"do_sample": True, "eta_cutoff": 0.02}, baseline=SAMPLE),
    "combined": Case(
        {"do_sample": True, "temperature": 0.8, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.3},
        baseline=SAMPLE,
    ),
    "bad_words_ids": Case(
        GREEDY,
        # Ban row 0's first token outright, and row 1's third token right after its second.
        derive=lambda g: {"bad_words_ids": [[int(g[0, 0])], [int(g[1, 1]), int(g[1, 2])]]},
        baseline=GREEDY,
    ),
    "suppress_tokens": Case(
        GREEDY, derive=lambda g: {"suppress_tokens": _distinct(g[:, 1].tolist())}, baseline=GREEDY
    ),
    "begin_suppress_tokens": Case(
        SAMPLE, derive=lambda g: {"begin_suppress_tokens": _distinct(g[:, 0].tolist())}, baseline=SAMPLE
    ),
    "min_new_tokens": Case(
        # EOS = every token the rows emit in their first 4 steps: all banned until step 4, then likely soon.
        {"do_sample": True, "min_new_tokens": 4},
        derive=lambda g: {"eos_token_id": _distinct(g[:, :4].flatten().tolist())},
        baseline=None,
        stops="some",
    ),
    "eos_list_greedy": Case(
        GREEDY,
        derive=lambda g: {"eos_token_id": _distinct([int(g[0, 1]), int(g[1, 3]), int(g[2, 6])])},
        baseline=None,
        stops="all",
    ),
    "eos_sample": Case(
        SAMPLE,
        derive=lambda g: {"eos_token_id": _distinct([int(g[0, 2]), int(g[1, 5])])},
        baseline=None,
        stops="some",
    ),
    "num_return_sequences": Case(
        {"do_sample": True, "num_return_sequences": 2},
        derive=lambda g: {"eos_token_id": _distinct([int(g[0, 2]), int(g[3, 4])])},
        baseline=None,
        stops="some",
    ),
    "forced_eos_token_id": Case({"forced_eos_token_id": 7}, baseline=GREEDY),
    "min_length": Case(
        {"min_length": PROMPT_LEN + 4},
        derive=lambda g: {"eos_token_id": _distinct(g[:, :4].flatten().tolist())},
        baseline=None,
        stops="some",
    ),
    "eos_without_pad_token": Case(
        # pad_token_id=None: HF pads finished rows with the first EOS id.
        {"pad_token_id": None},
        derive=lambda g: {"eos_token_id": _distinct([int(g[1, 2]), int(g[0, 5])])},
        baseline=None,
        stops="some",
    ),
    "exponential_decay_length_penalty": Case(
        {"do_sample": True, "exponential_decay_length_penalty": (2, 3.0)}, baseline=SAMPLE
    ),
    "sequence_bias": Case(
        GREEDY,
        derive=lambda g: {"sequence_bias": [[[int(g[0, 0])], -20.0], [[int(g[2, 2]), int(g[2, 3])], -20.0]]},
        baseline=GREEDY,
    ),
    "renormalize_logits": Case({"do_sample": True, "top_k": 5, "renormalize_logits": True}, baseline=None),
    "top_h": Case({"do_sample": True, "top_h": 0.4, "top_k": 0}, baseline={"do_sample": True, "top_k": 0}),
    # For a decoder-only model HF's "encoder" input is the prompt itself.
    "encoder_repetition_penalty": Case({"encoder_repetition_penalty": 2.0}, baseline=GREEDY),
    "encoder_no_repeat_ngram_size": Case({"encoder_no_repeat_ngram_size": 1}, baseline=GREEDY),
    "user_max_length_beyond_max_new_tokens": Case(
        # The user's MaxLengthCriteria replaces the built one, so HF runs past max_new_tokens (to 13).
        GREEDY,
        user_criteria=lambda: [MaxLengthCriteria(max_length=PROMPT_LEN + MAX_NEW + 3)],
        baseline=GREEDY,
    ),
    "user_stopping_criteria": Case(
        # A user MaxLengthCriteria replaces the built one in place; StopBelow is appended.
        GREEDY,
        user_criteria=lambda: [StopBelow(20), MaxLengthCriteria(max_length=PROMPT_LEN + 7)],
        baseline=GREEDY,
    ),
    "user_processor_overrides_builtin": Case(
        # The user's RepetitionPenalty replaces the one built from repetition_penalty=1.2, in its slot.
        {"repetition_penalty": 1.2},
        user_processors=lambda: [BanLastToken(), RepetitionPenaltyLogitsProcessor(penalty=3.0)],
        baseline={"repetition_penalty": 1.2},
    ),
    "user_warpers_stack_with_builtin": Case(
        # Warpers are built *after* the merge in HF, so a user Temperature/TopK does not replace the
        # built ones: order is user Temperature(0.5), user TopK(10), then Temperature(0.7), TopK(50).
        {"do_sample": True, "temperature": 0.7},
        user_processors=lambda: [TemperatureLogitsWarper(0.5), TopKLogitsWarper(10)],
        baseline={"do_sample": True, "temperature": 0.7},
    ),
}

# Resolved kwargs per (model, case): the derive probe runs once.
_RESOLVED: dict[tuple[str, str], dict[str, Any]] = {}


def _resolve(model_name: str, hf: PreTrainedModel, case_name: str) -> dict[str, Any]:
    key = (model_name, case_name)
    if key not in _RESOLVED:
        case = CASES[case_name]
        kw = dict(case.kwargs)
        if case.length_kwargs:
            kw["max_new_tokens"] = MAX_NEW
        if case.derive is not None:
            probe = _hf_generate(hf, _prompts(), use_cache=True, seed=case.seed, **{**kw, "eos_token_id": None})
            kw.update(case.derive(probe[:, PROMPT_LEN:]))
        _RESOLVED[key] = kw
    return dict(_RESOLVED[key])


def _user_lists(case: Case) -> dict[str, Any]:
    # Fresh instances for every call; HF and ours get equal, separate lists.
    out: dict[str, Any] = {}
    if case.user_processors is not None:
        out["logits_processor"] = LogitsProcessorList(case.user_processors())
    if case.user_criteria is not None:
        out["stopping_criteria"] = StoppingCriteriaList(case.user_criteria())
    return out


def _hf_model(request: pytest.FixtureRequest, model_name: str) -> PreTrainedModel:
    return request.getfixturevalue(f"tiny_{model_name}")


# --------------------------------------------------------------------------------------------------
# Equivalence: the matrix
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case_name", list(CASES))
def test_matches_hf(request: pytest.FixtureRequest, case_name: str, model_name: str, path: str) -> None:
    hf = _hf_model(request, model_name)
    case = CASES[case_name]
    kw = _resolve(model_name, hf, case_name)
    ids = _prompts()
    ids_before = ids.clone()
    gc_before = hf.generation_config.to_dict()

    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref = _hf_generate(hf, ids, use_cache=hf_cache, seed=case.seed, **_user_lists(case), **kw)
    ours = _our_generate(model, ids, seed=case.seed, **_user_lists(case), **our_kw)

    assert ours.dtype == torch.long
    assert ours.shape == ref.shape, f"shape {tuple(ours.shape)} != HF {tuple(ref.shape)}\nours:\n{ours}\nHF:\n{ref}"
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    assert torch.equal(ids, ids_before), "generate modified input_ids in place"
    assert hf.generation_config.to_dict() == gc_before, "generate modified model.generation_config"


# --------------------------------------------------------------------------------------------------
# Guards: each case must be able to fail
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case_name", [n for n, c in CASES.items() if c.baseline is not None or c.stops])
def test_case_is_not_vacuous(request: pytest.FixtureRequest, case_name: str, model_name: str) -> None:
    """HF itself: the case's option changes the output, and EOS cases really stop rows early."""
    hf = _hf_model(request, model_name)
    case = CASES[case_name]
    kw = _resolve(model_name, hf, case_name)
    ref = _hf_generate(hf, _prompts(), use_cache=True, seed=case.seed, **_user_lists(case), **kw)
    if case.baseline is not None:
        base = _hf_generate(hf, _prompts(), use_cache=True, seed=case.seed, max_new_tokens=MAX_NEW, **case.baseline)
        assert not torch.equal(ref, base), f"{case_name} produces the same tokens as {case.baseline}: vacuous"
    if case.stops:
        eos = _as_list(kw.get("eos_token_id", hf.generation_config.eos_token_id))
        pad = kw.get("pad_token_id", PAD_ID)
        pad = eos[0] if pad is None else pad  # HF's fallback
        _assert_stops_early(ref, PROMPT_LEN, MAX_NEW, eos, pad, all_rows=case.stops == "all")


@pytest.mark.parametrize("case_name", ["combined", "top_p", "min_p", "eos_sample"])
def test_the_shortcut_mode_takes_the_exact_route(request: pytest.FixtureRequest, sampling: str, case_name: str) -> None:
    """Design guard: with the shortcuts on, every sampling step of these cases runs through them."""
    hf = _hf_model(request, "gpt2")
    _sampler.stats.reset()
    ours = _our_generate(hf, _prompts(), **_resolve("gpt2", hf, case_name))
    routes = (_sampler.stats.exact, _sampler.stats.plain)
    assert routes == ((ours.shape[1] - PROMPT_LEN, 0) if sampling == "shortcuts" else (0, ours.shape[1] - PROMPT_LEN))


def test_matrix_covers_required_options(request: pytest.FixtureRequest) -> None:
    used = set().union(*(_resolve("gpt2", _hf_model(request, "gpt2"), name) for name in CASES))  # derived ones too
    required = {
        "repetition_penalty", "no_repeat_ngram_size", "do_sample", "temperature", "top_k", "top_p", "min_p",
        "typical_p", "epsilon_cutoff", "eta_cutoff", "min_new_tokens", "num_return_sequences", "max_length",
        "forced_eos_token_id",
    }  # fmt: skip
    assert required <= used, required - used
    assert len(CASES) >= 12


# --------------------------------------------------------------------------------------------------
# Stronger than tokens: the processors see bit-identical scores at every step
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case_name", ["greedy", "combined", "eos_sample", "num_return_sequences"])
def test_scores_bitwise_identical(request: pytest.FixtureRequest, case_name: str, model_name: str, path: str) -> None:
    """A recording user processor sees the same input_ids and the same float32 bits as under HF."""
    hf = _hf_model(request, model_name)
    kw = _resolve(model_name, hf, case_name)
    ids = _prompts()
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref_rec, our_rec = Recorder(), Recorder()
    seed = CASES[case_name].seed
    ref = _hf_generate(hf, ids, use_cache=hf_cache, seed=seed, logits_processor=LogitsProcessorList([ref_rec]), **kw)
    ours = _our_generate(model, ids, seed=seed, logits_processor=LogitsProcessorList([our_rec]), **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    _assert_same_calls(our_rec, ref_rec)


# --------------------------------------------------------------------------------------------------
# Plain model returning full (B, T, V) logits
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case_name", ["greedy", "combined", "eos_sample"])
def test_plain_full_logits_matches_hf(request: pytest.FixtureRequest, case_name: str, model_name: str) -> None:
    """A plain model that returns logits for every position; ours must use the last one.

    Tokens must match HF's use_cache=False loop, but the scores cannot be bit-identical: HF runs the LM
    head on the last position only (logits_to_keep=1), and the head's matmul over all T positions rounds
    differently (measured: max |diff| 1.4e-6 at step 0 on both tiny models, the same hidden states fed to
    ``lm_head`` as (B, T, H) vs (B, 1, H)). That gap belongs to the wrapper, not to generate. What
    generate controls is checked bitwise instead: the scores it hands the processors are exactly the
    wrapper's last-position logits, cast to float32.
    """
    hf = _hf_model(request, model_name)
    kw = _resolve(model_name, hf, case_name)
    ids = _prompts()
    seed = CASES[case_name].seed
    wrapper = PlainFullLM(hf)
    our_rec = Recorder()
    ref = _hf_generate(hf, ids, use_cache=False, seed=seed, **kw)
    ours = _our_generate(
        wrapper, ids, seed=seed, logits_processor=LogitsProcessorList([our_rec]), **{**_plain_special_tokens(hf), **kw}
    )
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    if not {"repetition_penalty"} & kw.keys():  # no processor runs before the recorder
        with torch.no_grad():
            for step, (seen_ids, seen_scores) in enumerate(our_rec.calls):
                expected = wrapper(seen_ids)[:, -1].float()  # (B, V)
                assert torch.equal(seen_scores, expected), f"step {step}: scores are not the model's last logits"


# --------------------------------------------------------------------------------------------------
# Left-padded batch with attention_mask (HF model, with and without its cache)
# --------------------------------------------------------------------------------------------------
def _left_padded(lengths: tuple[int, ...] = (4, 7, 6)) -> tuple[torch.LongTensor, torch.LongTensor]:
    width = max(lengths)
    ids = _prompts(batch=len(lengths), length=width, seed=11)
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        ids[r, : width - n] = PAD_ID
        mask[r, width - n :] = 1
    return ids, mask


LEFT_PAD_CASES = {
    "greedy": {},
    "sample": {"do_sample": True},
    "sample_num_return_sequences": {"do_sample": True, "num_return_sequences": 2, "top_k": 10},
    "repetition_penalty": {"repetition_penalty": 1.8},
}
LEFT_PAD_PATHS = ("cache", "hf_no_cache")


@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", LEFT_PAD_PATHS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case_name", list(LEFT_PAD_CASES))
def test_left_padded_batch_matches_hf(
    request: pytest.FixtureRequest, case_name: str, model_name: str, path: str
) -> None:
    hf = _hf_model(request, model_name)
    ids, mask = _left_padded()
    kw = {"max_new_tokens": MAX_NEW, **LEFT_PAD_CASES[case_name]}
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref = _hf_generate(hf, ids, use_cache=hf_cache, attention_mask=mask, **kw)
    ours = _our_generate(model, ids, attention_mask=mask, **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    # Guard: the mask matters (without it HF attends to the pads and positions shift).
    unmasked = _hf_generate(hf, ids, use_cache=True, attention_mask=torch.ones_like(mask), **kw)
    assert not torch.equal(ref, unmasked), "attention_mask did not change HF's output: case is vacuous"


@pytest.mark.usefixtures("sampling")
@pytest.mark.skipif(not penalty_skips_padding(), reason="this transformers' generate penalises the left padding")
@pytest.mark.parametrize("path", LEFT_PAD_PATHS)
@pytest.mark.parametrize("model_name", MODELS)
def test_left_padding_is_not_penalised(request: pytest.FixtureRequest, model_name: str, path: str) -> None:
    """HF's repetition penalty skips each row's left padding (``prompt_ignore_length`` from the mask).

    The pad id is the token the most-padded row wants first, so penalising the pads would change it.
    """
    hf = _hf_model(request, model_name)
    ids, mask = _left_padded()
    kw: dict[str, Any] = {"max_new_tokens": MAX_NEW, "repetition_penalty": 1.8}
    # Masked pads do not affect the logits, so the first choice does not depend on the pad id.
    wanted = int(_hf_generate(hf, ids, use_cache=True, attention_mask=mask, **kw)[0, ids.shape[1]])
    ids = ids.masked_fill(mask == 0, wanted)
    kw["pad_token_id"] = wanted
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref = _hf_generate(hf, ids, use_cache=hf_cache, attention_mask=mask, **kw)
    ours = _our_generate(model, ids, attention_mask=mask, **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF (pad id {wanted})\nours:\n{ours}\nHF:\n{ref}"
    # Guard: a user RepetitionPenalty replaces HF's and knows nothing of the padding; it must differ.
    penalise_pads = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.8)])
    naive = _hf_generate(hf, ids, use_cache=True, attention_mask=mask, logits_processor=penalise_pads, **kw)
    assert not torch.equal(ref, naive), "penalising the pads changed nothing: case is vacuous"


@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", LEFT_PAD_PATHS)
@pytest.mark.parametrize("model_name", MODELS)
def test_all_ones_attention_mask_matches_hf(request: pytest.FixtureRequest, model_name: str, path: str) -> None:
    """An explicit mask without padding: HF drops it before the first forward."""
    hf = _hf_model(request, model_name)
    ids = _prompts()
    kw = {"max_new_tokens": MAX_NEW, **CASES["combined"].kwargs}
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref = _hf_generate(hf, ids, use_cache=hf_cache, attention_mask=torch.ones_like(ids), **kw)
    ours = _our_generate(model, ids, attention_mask=torch.ones_like(ids), **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"


# --------------------------------------------------------------------------------------------------
# stop_strings with a tokenizer
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("eos", ["model_eos", "no_eos"])
@pytest.mark.parametrize("mode", ["greedy", "sample"])
def test_stop_strings_match_hf(
    request: pytest.FixtureRequest, char_tokenizer, mode: str, eos: str, model_name: str, path: str
) -> None:
    """One stop string per row, built from what the model emits, ending at steps 2, 4 and 6.

    With ``model_eos`` a stopped row is pad-filled. With ``no_eos`` (eos_token_id=None) HF builds no
    EOS criterion, so a row stopped by a string is NOT pad-filled: it keeps receiving tokens until
    every row has stopped.
    """
    hf = _hf_model(request, model_name)
    tok = char_tokenizer
    ids = _prompts()
    kw: dict[str, Any] = {"max_new_tokens": MAX_NEW, **(SAMPLE if mode == "sample" else GREEDY)}
    if eos == "no_eos":
        kw["eos_token_id"] = None
    probe = _hf_generate(hf, ids, use_cache=True, **{**kw, "eos_token_id": None})[:, PROMPT_LEN:]
    stops = [
        tok.decode(probe[0, 1:3]),  # two whole tokens
        tok.decode(probe[1, 3:5])[-2:],  # a 2-char suffix, which may span the token boundary
        tok.decode(probe[2, 5:7]),
    ]
    kw["stop_strings"] = [x for i, x in enumerate(stops) if x not in stops[:i]]

    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref = _hf_generate(hf, ids, use_cache=hf_cache, tokenizer=tok, **kw)
    ours = _our_generate(model, ids, tokenizer=tok, **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF (stop {kw['stop_strings']})\nours:\n{ours}\nHF:\n{ref}"
    # Guard: every row was stopped, so generation ended before max_new_tokens.
    assert ref.shape[1] < PROMPT_LEN + MAX_NEW, f"stop strings {kw['stop_strings']} did not stop all rows:\n{ref}"


# --------------------------------------------------------------------------------------------------
# Where the config comes from
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("model_name", MODELS)
def test_model_generation_config_supplies_defaults(request: pytest.FixtureRequest, model_name: str) -> None:
    """With no kwargs, sampling settings and EOS ids come from ``model.generation_config``, as in HF."""
    hf = _hf_model(request, model_name)
    kw = _resolve(model_name, hf, "eos_sample")
    saved = hf.generation_config
    hf.generation_config = GenerationConfig.from_dict(saved.to_dict())
    try:
        # Same settings as the eos_sample case, but set on the model instead of passed.
        gc = hf.generation_config
        gc.do_sample, gc.eos_token_id, gc.max_new_tokens = True, kw["eos_token_id"], MAX_NEW
        ids = _prompts()
        ref = _hf_generate(hf, ids, use_cache=True)
        ours = _our_generate(hf, ids)
    finally:
        hf.generation_config = saved
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    _assert_stops_early(ref, PROMPT_LEN, MAX_NEW, kw["eos_token_id"], PAD_ID)


@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model_name", MODELS)
def test_generation_config_object_matches_hf(request: pytest.FixtureRequest, model_name: str, path: str) -> None:
    """A GenerationConfig passed positionally/by name, plus a kwarg overriding one of its fields."""
    hf = _hf_model(request, model_name)
    config = GenerationConfig(do_sample=True, top_k=8, top_p=0.9, max_new_tokens=MAX_NEW, pad_token_id=PAD_ID,
                              eos_token_id=EOS_ID)  # fmt: skip
    before = config.to_dict()
    ids = _prompts()
    hf_cache, model, our_kw = _for_path(path, hf, {"temperature": 0.8})
    ref = _hf_generate(hf, ids, use_cache=hf_cache, generation_config=config, temperature=0.8)
    ours = _our_generate(model, ids, generation_config=config, **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    assert config.to_dict() == before, "generate modified the caller's GenerationConfig"


# --------------------------------------------------------------------------------------------------
# Half-precision weights: HF casts each step's logits to float32 before processing
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf16_models(tiny_gpt2, tiny_llama) -> dict[str, PreTrainedModel]:
    return {"gpt2": copy.deepcopy(tiny_gpt2).to(torch.bfloat16), "llama": copy.deepcopy(tiny_llama).to(torch.bfloat16)}


@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("case_name", ["greedy", "combined"])
def test_bfloat16_model_matches_hf(bf16_models, case_name: str, model_name: str, path: str) -> None:
    hf = bf16_models[model_name]
    kw = {"max_new_tokens": MAX_NEW, **CASES[case_name].kwargs}
    ids = _prompts()
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref_rec, our_rec = Recorder(), Recorder()
    ref = _hf_generate(hf, ids, use_cache=hf_cache, logits_processor=LogitsProcessorList([ref_rec]), **kw)
    ours = _our_generate(model, ids, logits_processor=LogitsProcessorList([our_rec]), **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    assert ref_rec.calls[0][1].dtype == torch.float32  # HF casts bf16 logits before any processor
    _assert_same_calls(our_rec, ref_rec)


# --------------------------------------------------------------------------------------------------
# Lengths and masks HF derives from the model
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", LEFT_PAD_PATHS)
@pytest.mark.parametrize("model_name", MODELS)
def test_model_max_length_and_position_cap(request: pytest.FixtureRequest, model_name: str, path: str) -> None:
    """``model.generation_config.max_length`` counts the prompt; HF's implicit 20 is capped by the context."""
    hf = _hf_model(request, model_name)
    hf_cache, model, our_kw = _for_path(path, hf, {})
    saved = hf.generation_config
    hf.generation_config = GenerationConfig.from_dict(saved.to_dict())
    try:
        hf.generation_config.max_length = PROMPT_LEN + 5  # not the implicit default: no prompt added
        ids = _prompts()
        ref = _hf_generate(hf, ids, use_cache=hf_cache)
        ours = _our_generate(model, ids, **our_kw)
    finally:
        hf.generation_config = saved
    assert ref.shape[1] <= PROMPT_LEN + 5
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    # Implicit max_length=20 plus a 50-token prompt is capped at max_position_embeddings=64.
    long_ids = _prompts(length=50)
    ref = _hf_generate(hf, long_ids, use_cache=hf_cache)
    ours = _our_generate(model, long_ids, **our_kw)
    assert ref.shape[1] <= 64
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"


@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", LEFT_PAD_PATHS)
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("pad_is_eos", [False, True], ids=["pad_not_eos", "pad_is_eos"])
def test_mask_inferred_from_pad_tokens(
    request: pytest.FixtureRequest, pad_is_eos: bool, model_name: str, path: str
) -> None:
    """No attention_mask: HF masks pad ids found in the prompt, unless the pad id is also an EOS id."""
    hf = _hf_model(request, model_name)
    ids, mask = _left_padded()
    kw: dict[str, Any] = {"max_new_tokens": MAX_NEW, "do_sample": True}
    if pad_is_eos:
        kw["eos_token_id"] = PAD_ID
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ref = _hf_generate(hf, ids, use_cache=hf_cache, **kw)
    ours = _our_generate(model, ids, **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    # Guard: inference happened exactly when expected.
    with_mask = _hf_generate(hf, ids, use_cache=True, attention_mask=mask, **kw)
    assert torch.equal(ref, with_mask) != pad_is_eos


@pytest.mark.usefixtures("sampling")
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model_name", MODELS)
def test_user_eos_criterion_pads_like_hf(request: pytest.FixtureRequest, model_name: str, path: str) -> None:
    """eos_token_id=None but a user EosTokenCriteria: HF pad-fills because *some* criterion has eos ids."""
    hf = _hf_model(request, model_name)
    eos_ids = _resolve(model_name, hf, "eos_sample")["eos_token_id"]
    kw: dict[str, Any] = {"max_new_tokens": MAX_NEW, "do_sample": True, "eos_token_id": None}
    hf_cache, model, our_kw = _for_path(path, hf, kw)
    ids = _prompts()
    ref = _hf_generate(hf, ids, use_cache=hf_cache, stopping_criteria=StoppingCriteriaList([EosTokenCriteria(eos_ids)]),
                       **kw)  # fmt: skip
    ours = _our_generate(model, ids, stopping_criteria=StoppingCriteriaList([EosTokenCriteria(eos_ids)]), **our_kw)
    assert torch.equal(ours, ref), f"tokens differ from HF\nours:\n{ours}\nHF:\n{ref}"
    _assert_stops_early(ref, PROMPT_LEN, MAX_NEW, eos_ids, PAD_ID)


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampling"])
def test_return_dict_in_generate_gives_hfs_scores_and_logits(tiny_gpt2, sample: bool) -> None:
    from lightning_gen import generate

    ids = torch.randint(FIRST_REGULAR_ID, VOCAB_SIZE, (2, 5), generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=6, do_sample=sample, top_k=10 if sample else None, return_dict_in_generate=True,
              output_scores=True, output_logits=True, eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    torch.manual_seed(4)
    expected = tiny_gpt2.generate(ids, **kw)
    ours = generate(tiny_gpt2, ids, generator=torch.Generator().manual_seed(4), **kw)
    assert type(ours) is type(expected) and torch.equal(ours.sequences, expected.sequences)
    for field in ("scores", "logits"):
        assert len(getattr(ours, field)) == len(getattr(expected, field)) == 6
        assert all(torch.equal(a, b) for a, b in zip(getattr(ours, field), getattr(expected, field)))
    plain = generate(tiny_gpt2, ids, generator=torch.Generator().manual_seed(4), **{**kw, "output_logits": False})
    assert plain.logits is None and len(plain.scores) == 6


@pytest.mark.parametrize("field", ["output_attentions", "output_hidden_states"])
def test_return_dict_fields_we_cannot_fill_raise_naming_them(tiny_gpt2, field: str) -> None:
    from lightning_gen import generate

    with pytest.raises(NotImplementedError, match=field):
        generate(tiny_gpt2, torch.tensor([[5, 6]]), max_new_tokens=2, return_dict_in_generate=True, **{field: True})
