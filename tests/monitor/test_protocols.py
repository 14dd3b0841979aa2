"""The monitor on model code as users write it: each real protocol inside a LightningModule as ``self.model``.

For nanoGPT, gpt-fast (also under ``bf16-mixed``), torchtune (the real package from PyPI, and the re-creation the
other tests use, checked against it), the real litgpt package, a recurrent-state model and a transformers Llama
(with its config's own EOS and rotary buffers), with default monitor arguments (but the schedule and 16 new
tokens): every round samples without a warning, training is bit-identical with and without the monitor, a round
leaves ``state_dict()`` keys and every buffer as they were, the package's own generation and a training step work
after a round, and the run's checkpoint loads. Beside that, greedy `generate` equals each protocol's own greedy
loop, and cached equals uncached.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Sequence

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from tiny import (
    PROMPT,
    CharTokenizer,
    GPTConfig,
    GptFast,
    ModelArgs,
    NanoGPT,
    RecurrentArgs,
    RecurrentLM,
    StateAdapter,
    TorchtuneDecoder,
    gpt_fast_generate,
    init_weights,
    recurrent_generate,
    seeded,
    text_events,
    torchtune_generate,
    trainer,
)

from lightning_gen import GenerationMonitor, generate
from lightning_gen.decoding.adapters import (
    GptFastAdapter,
    HFAdapter,
    LitGPTAdapter,
    PlainAdapter,
    TorchtuneAdapter,
    resolve_adapter,
)

SYMBOLS = (string.ascii_letters + string.digits + " .,!")[:65]  # a 65-symbol character vocabulary
BLOCK = 48  # room for a prompt plus 16 new tokens, and a prompt cropped to fit
TRAIN_BATCH, TRAIN_LENGTH = 4, 16
PROMPTS = ["The cat sat", "a"]  # a one-token prompt too
KINDS = ["nanogpt", "gpt-fast", "torchtune", "torchtune-real", "litgpt", "recurrent", "transformers"]
REAL_PACKAGES = ("torchtune-real", "litgpt", "transformers")  # installed from PyPI, not re-created


def build(kind: str, seed: int = 0) -> torch.nn.Module:
    """The ``kind`` of model with weights from ``seed`` alone (the global RNG is left as it was)."""
    with seeded(seed):
        return init_weights(_construct(kind), seed)


def _construct(kind: str) -> torch.nn.Module:
    if kind == "nanogpt":
        model = NanoGPT(GPTConfig(block_size=BLOCK, vocab_size=128))  # padded: 128 logits for 65 symbols
    elif kind == "gpt-fast":
        model = GptFast(ModelArgs(block_size=BLOCK, vocab_size=len(SYMBOLS)))
    elif kind == "torchtune":
        model = TorchtuneDecoder(vocab_size=len(SYMBOLS), max_seq_len=BLOCK)
    elif kind == "torchtune-real":
        pytest.importorskip("torchtune", reason="torchtune is not installed (.ci/run installs it)")
        from torchtune.models.llama3 import llama3

        model = llama3(vocab_size=len(SYMBOLS), num_layers=1, num_heads=2, num_kv_heads=1, embed_dim=32,
                       max_seq_len=BLOCK, intermediate_dim=64)
    elif kind == "litgpt":
        pytest.importorskip("litgpt.model", reason="litgpt is not installed (.ci/run installs it)")
        from litgpt.config import Config
        from litgpt.model import GPT

        model = GPT(Config(n_layer=1, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=len(SYMBOLS),
                           padded_vocab_size=72, bias=True))
    elif kind == "transformers":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                             num_attention_heads=2, num_key_value_heads=1,
                                             vocab_size=len(SYMBOLS), max_position_embeddings=BLOCK))
    else:
        model = RecurrentLM(RecurrentArgs(vocab_size=len(SYMBOLS)))
    return model


class Module(pl.LightningModule):
    """The usual LightningModule: the network in ``self.model``, a training step that calls it for the loss."""

    def __init__(self, kind: str = "nanogpt") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.kind = kind
        self.model = build(kind)
        self.tokenizer = CharTokenizer(SYMBOLS)  # one id per symbol; an id >= 65 raises IndexError
        if kind == "gpt-fast":
            # gpt-fast's forward needs `freqs_cis` and `causal_mask`: made once for training, without KV caches.
            self.model.setup_caches(max_batch_size=TRAIN_BATCH, max_seq_length=TRAIN_LENGTH)
            for layer in self.model.layers:
                layer.attention.kv_cache = None

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        inputs, targets = x[:, :-1], x[:, 1:].contiguous()
        if self.kind == "nanogpt":
            _, loss = self.model(inputs, targets)
            return loss
        if self.kind == "gpt-fast":
            logits = self.model(inputs, torch.arange(inputs.shape[1]))
        elif self.kind == "recurrent":
            logits, _ = self.model(inputs)
        elif self.kind == "transformers":
            logits = self.model(inputs).logits
        else:
            logits = self.model(inputs)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        data = torch.randint(0, len(SYMBOLS), (32, TRAIN_LENGTH + 1), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=TRAIN_BATCH)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    state = {f"state_dict/{k}": v.detach().clone() for k, v in module.state_dict().items()}
    state.update({f"buffer/{k}": v.detach().clone() for k, v in module.named_buffers()})
    return state


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def _fit(tmp_path, kind: str, *, monitor: bool, precision: str = "32-true"):
    torch.manual_seed(0)
    module = Module(kind)
    # Default arguments but the schedule and a short completion (to keep the test fast).
    callbacks = [GenerationMonitor(PROMPTS, every_n_train_steps=2, generation={"max_new_tokens": 16})] if monitor else []
    run = trainer(tmp_path, callbacks, max_steps=4, precision=precision)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.fit(module)
    ours = [str(w.message) for w in caught if "GenerationMonitor" in str(w.message)]
    return module, run, ours


@pytest.fixture(scope="module", params=KINDS + ["gpt-fast/bf16-mixed"])
def runs(request, tmp_path_factory):
    kind, _, precision = request.param.partition("/")
    precision = precision or "32-true"
    with_monitor = _fit(tmp_path_factory.mktemp("with"), kind, monitor=True, precision=precision)
    without = _fit(tmp_path_factory.mktemp("without"), kind, monitor=False, precision=precision)
    return kind, with_monitor, without


def test_every_round_samples_without_a_warning(runs):
    kind, (module, run, warned), _ = runs
    assert warned == []
    events = text_events(run.logger.log_dir)
    for i in range(len(PROMPTS)):
        assert sorted(events[f"samples/prompt_{i:02d}"]) == [0, 2, 4]  # start, every 2 steps, end (= step 4)
    monitor = next(c for c in run.callbacks if isinstance(c, GenerationMonitor))
    assert monitor._target.network.called is module.model  # found through `self.model`, not the LightningModule


def test_training_is_bit_identical_with_and_without_the_monitor(runs):
    _, (with_module, _, _), (without_module, _, _) = runs
    assert _same(_state(with_module), _state(without_module))


def test_a_round_leaves_state_dict_keys_and_every_buffer_as_they_were(runs):
    kind, (module, run, _), _ = runs
    monitor = next(c for c in run.callbacks if isinstance(c, GenerationMonitor))
    attributes = {name: getattr(module.model, name, None) for name in ("max_batch_size", "max_seq_length")}
    before = _state(module)
    samples = monitor.sample_now(run, step=100)
    assert len(samples) == len(PROMPTS) and all(s.completion_ids for s in samples)
    assert all(max(s.completion_ids) < len(SYMBOLS) for s in samples)  # padded ids are never sampled
    assert _same(before, _state(module))
    assert {name: getattr(module.model, name, None) for name in attributes} == attributes


def test_the_packages_own_generation_works_after_a_round_and_agrees_with_ours(runs):
    """A round must leave nothing that changes how the model's own code runs (torchtune's `cache_enabled` flag made
    its generate and the next training step fail)."""
    kind, (module, run, _), _ = runs
    if kind not in REAL_PACKAGES:
        pytest.skip(f"{kind} is a re-creation: its own loop is checked against `generate` below")
    monitor = next(c for c in run.callbacks if isinstance(c, GenerationMonitor))
    monitor.sample_now(run, step=100)
    model = module.model.eval()
    own = _own_greedy(kind, model, PROMPT, 6)
    vocab = {"litgpt": 72}.get(kind)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.precision == "bf16-mixed"):
        assert torch.equal(generate(model, PROMPT, max_new_tokens=6, vocab_size=vocab), own)
    module.train()
    (x,) = next(iter(module.train_dataloader()))
    assert torch.isfinite(module.training_step((x,), 0))  # and a training step runs after it


def test_the_runs_checkpoint_loads(runs, tmp_path):
    kind, (module, run, _), _ = runs
    path = tmp_path / "last.ckpt"
    run.save_checkpoint(path)
    restored = Module.load_from_checkpoint(path)
    assert _same({k: v for k, v in _state(restored).items() if k.startswith("state_dict/")},
                 {k: v for k, v in _state(module).items() if k.startswith("state_dict/")})


# ------------------------------------------------------------------------------------------ decoding alone
def _own_greedy(kind: str, model: torch.nn.Module, ids: torch.Tensor, steps: int) -> torch.Tensor:
    if kind == "nanogpt":
        return model.generate(ids, steps)
    if kind == "gpt-fast":
        return gpt_fast_generate(model, ids, steps)
    if kind == "torchtune":
        return torchtune_generate(model, ids, steps)
    if kind == "torchtune-real":
        from torchtune.generation import generate as torchtune_own

        return torchtune_own(model, ids, max_generated_tokens=steps, top_k=1)[0]
    if kind == "recurrent":
        return recurrent_generate(model, ids, steps)
    if kind == "transformers":
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, do_sample=False)
    from litgpt.generate.base import generate as litgpt_generate

    rows = []
    for row in ids:  # litgpt's generate takes one prompt
        model.set_kv_cache(batch_size=1)
        rows.append(litgpt_generate(model, row, ids.shape[1] + steps, temperature=0.0))
        model.clear_kv_cache()
    return torch.stack(rows)


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_equals_the_protocols_own_loop_and_cached_equals_uncached(kind):
    model = build(kind, seed=1).eval()
    adapter = StateAdapter(model) if kind == "recurrent" else None
    steps = 20
    # litgpt's own loop samples from all `padded_vocab_size` logits (72); `generate` keeps `vocab_size` (65) unless told.
    vocab = {"litgpt": 72}.get(kind)
    out = generate(model, PROMPT, max_new_tokens=steps, adapter=adapter, vocab_size=vocab)
    own = _own_greedy(kind, model, PROMPT, steps)
    assert len(set(own[:, 5:].flatten().tolist())) >= 4  # not a constant run: positions and cache matter
    assert torch.equal(out, own)
    assert torch.equal(generate(model, PROMPT, max_new_tokens=steps, use_cache=False, vocab_size=vocab), out)


@pytest.mark.parametrize(("kind", "expected"), [
    ("nanogpt", PlainAdapter), ("gpt-fast", GptFastAdapter), ("torchtune", TorchtuneAdapter),
    ("torchtune-real", TorchtuneAdapter),
    ("litgpt", LitGPTAdapter), ("recurrent", PlainAdapter), ("transformers", HFAdapter),
])
def test_each_protocol_is_detected_by_signature(kind, expected):
    assert type(resolve_adapter(build(kind))) is expected


def test_a_torchtune_model_keeps_the_caches_its_user_set_up():
    model = build("torchtune", seed=1).eval()
    model.setup_caches(1, torch.float32, decoder_max_seq_len=40)
    caches = [layer.attn.kv_cache for layer in model.layers]
    out = generate(model, PROMPT, max_new_tokens=6)
    assert [layer.attn.kv_cache for layer in model.layers] == caches and model.caches_are_enabled()
    assert all(int(c.cache_pos[0]) == 0 and not c.k_cache.any() for c in caches)  # never written into
    for layer in model.layers:
        layer.attn.kv_cache, layer.attn.cache_enabled = None, False
    assert torch.equal(out, torchtune_generate(model, PROMPT, 6))


def test_gpt_fast_caches_follow_the_input_device_and_autocast():
    model = build("gpt-fast", seed=1).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = generate(model, PROMPT, max_new_tokens=6)
    assert out.shape == (2, 11) and model.freqs_cis is None and model.causal_mask is None
    assert all(layer.attention.kv_cache is None for layer in model.layers)


def test_a_gpt_fast_model_keeps_the_caches_its_user_set_up():
    model = build("gpt-fast", seed=1).eval()
    model.setup_caches(max_batch_size=2, max_seq_length=40)  # big enough: gpt-fast itself would reuse them
    caches = [layer.attention.kv_cache for layer in model.layers]
    mask, freqs = model.causal_mask, model.freqs_cis
    out = generate(model, PROMPT, max_new_tokens=6)
    assert [layer.attention.kv_cache for layer in model.layers] == caches
    assert model.causal_mask is mask and model.freqs_cis is freqs and (model.max_batch_size, model.max_seq_length) == (2, 40)
    assert not any(c.k_cache.any() or c.v_cache.any() for c in caches)  # never written into
    assert torch.equal(out, generate(build("gpt-fast", seed=1).eval(), PROMPT, max_new_tokens=6))


def _cache_trace(model: torch.nn.Module) -> list:
    """What torchtune's protocol shows, step by step: set up and enabled before and after `generate`, after the
    user's own `setup_caches`, and whether a forward without a mask is refused while caches are enabled."""
    trace = [(model.caches_are_setup(), model.caches_are_enabled())]
    generate(model, PROMPT, max_new_tokens=4)
    trace.append((model.caches_are_setup(), model.caches_are_enabled()))
    model.setup_caches(2, torch.float32, decoder_max_seq_len=40)
    trace.append((model.caches_are_setup(), model.caches_are_enabled(), model.decoder_max_cache_seq_len))
    generate(model, PROMPT, max_new_tokens=4)
    trace.append((model.caches_are_setup(), model.caches_are_enabled(), model.decoder_max_cache_seq_len))
    with pytest.raises(ValueError, match="causal masks must be provided"):
        model(PROMPT)
    return trace


def test_the_torchtune_recreation_behaves_as_torchtune_from_pypi():
    real = build("torchtune-real", seed=1).eval()
    assert _cache_trace(build("torchtune", seed=1).eval()) == _cache_trace(real) == [
        (False, False), (False, False), (True, True, 40), (True, True, 40)]
