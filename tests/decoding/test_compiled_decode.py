"""`compile`: the one-token decode step of a static-cache model through `torch.compile`, token-identical to eager.

litgpt and gpt-fast compile their own step; transformers models decode over a static cache with the forward
compiled. A recording backend counts graphs and input addresses; inductor (C++ kernels on the CPU) runs once each.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tiny import N_TOKENS, PROMPT, LitStyleLM, build_litgpt, tiny_gpt2, tiny_gpt_fast
from torch import nn

from lightning_gen import generate
from lightning_gen.decoding.adapters import GptFastAdapter


@pytest.fixture(scope="module")
def litgpt_model() -> nn.Module:
    pytest.importorskip("litgpt.model")
    return build_litgpt()


class GraphRecorder:
    """A `torch.compile` backend that runs the captured graphs eagerly and records them and their input addresses."""

    def __init__(self) -> None:
        self.graphs = 0
        self.addresses: list[tuple[int, ...]] = []

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.graphs += 1

        def run(*args):
            # The step's own inputs (token ids and position), not the weights and caches.
            self.addresses.append(tuple(a.data_ptr() for a in args if isinstance(a, torch.Tensor) and a.dtype == torch.long))
            return graph(*args)

        return run


@pytest.fixture(params=["litgpt", "gpt-fast"])
def cache_model(request) -> nn.Module:
    """A real litgpt GPT, or the faithful gpt-fast copy (`LitStyleLM` counts its calls, which dynamo would
    rightly recompile for)."""
    return request.getfixturevalue("litgpt_model") if request.param == "litgpt" else tiny_gpt_fast(N_TOKENS)


def test_compiled_decode_step_is_one_graph_with_fixed_input_addresses(cache_model):
    model = cache_model
    recorder = GraphRecorder()
    eager = generate(model, PROMPT, max_new_tokens=10)
    got = generate(model, PROMPT, max_new_tokens=10, compile={"backend": recorder})
    assert torch.equal(got, eager)
    assert recorder.graphs == 1 and len(recorder.addresses) == 9  # 9 decode steps, the prompt runs eagerly
    assert len(set(recorder.addresses)) == 1
    # A second call with the same shapes reuses the graph.
    assert torch.equal(generate(model, PROMPT, max_new_tokens=10, compile={"backend": recorder}), eager)
    assert recorder.graphs == 1


def test_compiled_decode_step_samples_like_eager(cache_model):
    model = cache_model
    kw = dict(max_new_tokens=12, do_sample=True, temperature=1.3, top_k=10)
    eager = generate(model, PROMPT, generator=torch.Generator().manual_seed(5), **kw)
    got = generate(model, PROMPT, generator=torch.Generator().manual_seed(5), compile={"backend": GraphRecorder()}, **kw)
    assert torch.equal(got, eager)


def test_compiled_decode_outputs_are_copies():
    # With CUDA graphs, the next replay overwrites a step's output: decode returns a copy.
    model = tiny_gpt_fast(N_TOKENS)
    static = {}

    def overwriting(graph, example_inputs):
        def run(*args):
            out = graph(*args)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            buffer = static.setdefault("out", torch.empty_like(logits))
            buffer.copy_(logits)
            return (buffer,) if isinstance(out, (tuple, list)) else buffer
        return run

    adapter = GptFastAdapter(model)
    adapter.compile({"backend": overwriting})
    ids = PROMPT
    adapter.prefill(ids, None, max_length=8)
    first = adapter.decode(torch.cat([ids, ids[:, :1]], dim=1), None)
    kept = first.clone()
    adapter.decode(torch.cat([ids, ids[:, :2]], dim=1), None)
    adapter.close()
    assert torch.equal(first, kept)


def test_compiled_decode_step_with_inductor_matches_eager_greedy():
    # The real compiler (C++ kernels on the CPU): a few seconds.
    model = tiny_gpt_fast(N_TOKENS)
    eager = generate(model, PROMPT, max_new_tokens=8)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=8, compile=True), eager)


@pytest.mark.parametrize("adapter", ["plain", "hf"])
def test_compile_needs_a_static_kv_cache(adapter):
    model = LitStyleLM() if adapter == "plain" else tiny_gpt2(N_TOKENS)
    with pytest.raises(ValueError, match="`compile` needs a model with a static KV cache"):
        # A transformers model without its cache has no fixed shapes either.
        generate(model, PROMPT, max_new_tokens=3, adapter=adapter, compile=True, use_cache=adapter == "plain")


def test_transformers_decode_compiles_over_a_static_cache_and_a_second_call_reuses_the_graphs():
    model = tiny_gpt2(N_TOKENS)
    recorder = GraphRecorder()
    graphs = []
    for kw in (dict(), dict(do_sample=True, top_k=10)):
        eager = generate(model, PROMPT, max_new_tokens=10, generator=torch.Generator().manual_seed(3), **kw)
        got = generate(model, PROMPT, max_new_tokens=10, generator=torch.Generator().manual_seed(3),
                       compile={"backend": recorder}, **kw)
        assert torch.equal(got, eager)
        graphs.append(recorder.graphs)
    # One graph with transformers 5.24 (5.3 breaks the forward into three); none new for the second call. Each of
    # the 9 decode steps of a call runs every graph once; the prompt runs eagerly.
    assert graphs[0] == graphs[1] <= 3 and len(recorder.addresses) == 18 * graphs[0]
    assert not any(name.startswith("_compiled") for name in vars(model))  # the model is left as it was


def test_transformers_decode_with_inductor_matches_eager():
    # The real compiler (C++ kernels on the CPU): a few seconds.
    model = tiny_gpt2(N_TOKENS)
    eager = generate(model, PROMPT, max_new_tokens=8)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=8, compile=True), eager)


def test_compile_must_be_a_bool_or_a_mapping():
    with pytest.raises(TypeError, match="`compile` must be a bool or a mapping of torch.compile arguments, got 'yes'"):
        generate(LitStyleLM(), PROMPT, max_new_tokens=3, compile="yes")
