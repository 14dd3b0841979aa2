"""Which network the monitor drives in a LightningModule, and the vocabulary and context it samples within."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from tiny import (
    CharTokenizer,
    RecurrentArgs,
    RecurrentLM,
    StateAdapter,
    init_weights,
    recurrent_generate,
    text_events,
    trainer,
)
from torch import nn

from lightning_gen import GenerationMonitor
from lightning_gen.decoding.adapters import (
    PlainAdapter,
    find_context_length,
    find_vocab_size,
    resolve_adapter,
)
from lightning_gen.monitor.network import find_network


class Net(nn.Module):
    """A language model that says how long its context is."""

    def __init__(self, vocab: int = 37) -> None:
        super().__init__()
        self.config = SimpleNamespace(block_size=16, vocab_size=vocab)
        self.emb, self.head = nn.Embedding(vocab, 8), nn.Linear(8, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids))  # (B, T, V)


class Wrapper(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


class Holder(pl.LightningModule):
    def __init__(self, **children: nn.Module) -> None:
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


def test_the_child_in_self_model_is_found_and_called():
    module = Holder(model=Net())
    network = find_network(module)
    assert network.called is module.model and network.name == "pl_module.model"


def test_a_model_in_a_module_wrapper_is_found_through_it():
    module = Holder(model=Wrapper(Net()))
    network = find_network(module)
    assert network.called is module.model.module and network.name == "pl_module.model.module"


def test_a_lightning_module_with_its_own_context_is_the_model():
    module = Holder(emb=nn.Embedding(4, 4))
    module.block_size = 8
    assert find_network(module).called is module


def test_layers_in_a_module_list_are_not_candidates():
    module = Holder(blocks=nn.ModuleList([Net(), Net()]))
    assert find_network(module).called is module


def test_two_language_models_are_an_error_naming_both_and_model_attr():
    with pytest.raises(ValueError, match=r"`pl_module\.student` \(Net\), `pl_module\.teacher` \(Net\).*model_attr"):
        find_network(Holder(student=Net(), teacher=Net()))
    module = Holder(student=Net(), teacher=Net())
    assert find_network(module, "teacher").called is module.teacher


def test_a_head_outside_the_child_makes_the_lightning_module_the_model():
    module = Holder(backbone=Net(), extra_head=nn.Linear(37, 37))
    network = find_network(module)
    assert network.called is module and network.holder is module.backbone


def test_settings_in_config_args_and_sequence_len_are_discovered():
    nanochat = nn.Linear(1, 1)
    nanochat.config = SimpleNamespace(sequence_len=64, vocab_size=65)
    mamba_minimal = nn.Linear(1, 1)
    mamba_minimal.args = SimpleNamespace(vocab_size=50)
    assert (find_context_length(nanochat), find_vocab_size(nanochat)) == (64, 65)
    assert find_vocab_size(mamba_minimal) == 50


def test_an_unknown_setup_caches_signature_falls_back_to_plain_with_one_warning():
    model = Net()
    model.setup_caches = lambda size, length, flavour: None
    with pytest.warns(UserWarning, match="setup_caches.*fits neither") as record:
        adapter = resolve_adapter(model)
    assert type(adapter) is PlainAdapter and len(record) == 1


# ------------------------------------------------------------------------------------------------ in a run
class Recurrent(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = init_weights(RecurrentLM(RecurrentArgs(vocab_size=37)), seed=3)
        self.tokenizer = CharTokenizer()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        logits, _ = self.model(x[:, :-1])
        return nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # weights stay: samples are checked against a fixed model

    def train_dataloader(self):
        data = torch.randint(0, 37, (8, 9), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=4)


def _round(tmp_path, prompt="hello world", **monitor_args):
    module = Recurrent()
    monitor = GenerationMonitor([prompt], generation={"max_new_tokens": 12}, sample_on_train_end=False,
                                **monitor_args)
    trainer(tmp_path, [monitor], max_steps=1).fit(module)
    return module, monitor, monitor.sample_now(trainer(tmp_path / "again", [monitor], max_steps=1), step=1)


def test_adapter_by_import_path_drives_the_recurrent_state(tmp_path, console):
    module, monitor, samples = _round(tmp_path, adapter="tiny.StateAdapter")
    assert isinstance(monitor._plan.adapter, StateAdapter) and monitor._plan.adapter.model is module.model
    prompt = torch.tensor([CharTokenizer().encode("hello world")])
    expected = recurrent_generate(module.model.eval(), prompt, 12)[0, prompt.shape[1]:].tolist()
    assert samples[0].completion_ids == expected
    lines = [m for m in console.messages if "GenerationMonitor: sampling" in m]
    assert lines == ["GenerationMonitor: sampling `pl_module.model` (RecurrentLM, StateAdapter protocol); context "
                     "unknown, vocabulary 37 (the model's 37 logits); prompts batched by length; scored"]


def test_vocab_size_on_the_monitor_overrides_the_discovered_one(tmp_path):
    _, monitor, samples = _round(tmp_path, prompt="abcd", vocab_size=5)  # ids 0 ... 3
    assert monitor._plan.vocab == 5 and monitor._plan.vocab_source == "`vocab_size`"
    assert all(token < 5 for token in samples[0].completion_ids)


@pytest.mark.parametrize(("adapter", "error"), [("vllm", ValueError), ("os.path", ValueError), (3, TypeError)])
def test_a_bad_adapter_is_refused_when_the_monitor_is_built(adapter, error):
    with pytest.raises(error, match="adapter"):
        GenerationMonitor(["a"], adapter=adapter)


def test_a_bad_vocab_size_is_refused_when_the_monitor_is_built():
    with pytest.raises(ValueError, match="vocab_size"):
        GenerationMonitor(["a"], vocab_size=0)


def test_adapter_and_vocab_size_come_from_yaml():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(GenerationMonitor, "monitor")
    config = parser.parse_string("monitor:\n  prompts: [ab]\n  adapter: tiny.StateAdapter\n  vocab_size: 30\n")
    monitor = parser.instantiate_classes(config).monitor
    assert monitor.adapter == "tiny.StateAdapter" and monitor.vocab_size == 30


# ------------------------------------------------------------------------------------------------ no forward of its own
class Bare(nn.Module):
    """A language model that advertises nothing: no context, no vocabulary, no config."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(37, 8), nn.Linear(8, 37)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids))  # (B, T, V)


class StepOnly(pl.LightningModule):
    """The network is called in ``training_step`` only: the LightningModule defines no ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net, self.loss = Bare(), nn.CrossEntropyLoss()
        self.tokenizer = CharTokenizer()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.loss(self.net(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.randint(0, 37, (8, 9), generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=4)


class LossForward(StepOnly):
    """A ``forward`` that is a training wrapper: it takes a batch and returns the loss."""

    def forward(self, batch):
        return self.training_step(batch, 0)


def test_a_lightning_module_without_forward_is_sampled_through_the_child_holding_its_weights():
    module = StepOnly()
    assert find_network(module).called is module.net and find_network(module).name == "pl_module.net"
    wrapped = Holder(model=Wrapper(Bare()))  # through a wrapper without forward
    assert find_network(wrapped).called is wrapped.model.module
    assert isinstance(find_network(Holder(a=Bare(), b=Bare())).called, Holder)  # spread weights: the LightningModule
    assert find_network(LossForward()).called.__class__ is LossForward  # a forward of its own is the user's choice


def test_a_run_of_a_lightning_module_without_forward_samples_every_round(tmp_path):
    module = StepOnly()
    monitor = GenerationMonitor(["hello"], every_n_train_steps=2, generation={"max_new_tokens": 6})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no round is lost, no warning
        warnings.filterwarnings("ignore", message=".*(does not have many workers|log_every_n_steps).*")
        trainer(tmp_path, [monitor], max_steps=4).fit(module)
    steps = sorted(text_events(str(tmp_path / "tb" / "version_0"))["samples/prompt_00"])
    assert steps == [0, 2, 4]


def test_a_forward_that_is_a_training_wrapper_fails_before_step_one_naming_the_network_and_model_attr(tmp_path):
    module = LossForward()
    monitor = GenerationMonitor(["hello"], every_n_train_steps=2, generation={"max_new_tokens": 6})
    with pytest.raises(ValueError, match=r"IndexError.*sampling `pl_module`.*set `model_attr`"):
        trainer(tmp_path, [monitor], max_steps=4).fit(module)
    assert module.trainer.global_step == 0
    monitor = GenerationMonitor(["hello"], every_n_train_steps=2, generation={"max_new_tokens": 6}, model_attr="net")
    trainer(tmp_path / "fixed", [monitor], max_steps=2).fit(LossForward())
