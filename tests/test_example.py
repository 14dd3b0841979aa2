"""Tests for the example pretraining project in ``examples/`` (model, data, LightningCLI entry point)."""

import json
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# `examples/` is a folder of scripts, not a package; its modules import each other by bare name.
sys.path.insert(0, str(EXAMPLES))

from data import CharDataModule, CharTokenizer, is_prose  # noqa: E402
from model import GPT  # noqa: E402
from pretrain import CharGPT, cli_main  # noqa: E402


def _tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    kwargs = dict(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.1)
    return GPT(**(kwargs | overrides))


@pytest.mark.parametrize("tie_weights", [True, False])
def test_kv_cache_prefill_then_decode_matches_full_forward(tie_weights):
    model = _tiny_gpt(tie_weights=tie_weights).eval()  # eval: dropout would make the two paths differ
    idx = torch.randint(0, 17, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx)  # (B, T, V)
        model.set_kv_cache(batch_size=2)
        prompt_len = 5
        prefill = model(idx[:, :prompt_len], input_pos=torch.arange(prompt_len))
        torch.testing.assert_close(prefill, full[:, :prompt_len], atol=1e-5, rtol=0)
        for pos in range(prompt_len, idx.size(1)):
            step = model(idx[:, pos : pos + 1], input_pos=torch.tensor([pos]))  # (B, 1, V)
            torch.testing.assert_close(step[:, 0], full[:, pos], atol=1e-5, rtol=0)


def test_kv_cache_serves_a_smaller_batch_and_a_shorter_length():
    model = _tiny_gpt().eval()
    idx = torch.randint(0, 17, (1, 6), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(idx)
        model.set_kv_cache(batch_size=4, max_seq_length=8)
        assert model.blocks[0].attn.kv_cache.k.shape == (4, 2, 8, 8)
        out = torch.cat([model(idx[:, p : p + 1], input_pos=torch.tensor([p])) for p in range(6)], dim=1)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=0)


def test_clear_kv_cache_frees_buffers_and_training_forward_ignores_cache():
    model = _tiny_gpt()
    model.set_kv_cache(batch_size=2)
    assert any("kv_cache" in name for name, _ in model.named_buffers())
    assert not any("kv_cache" in key for key in model.state_dict())  # caches never reach checkpoints
    model.clear_kv_cache()
    assert all(block.attn.kv_cache is None for block in model.blocks)
    assert not any("kv_cache" in name for name, _ in model.named_buffers())

    model.train()
    idx = torch.randint(0, 17, (3, 16))
    logits = model(idx)  # (B, T, V)
    assert logits.shape == (3, 16, 17)
    logits.sum().backward()
    assert model.wte.weight.grad is not None
    with pytest.raises(TypeError, match="set_kv_cache"):
        model(idx[:, :1], input_pos=torch.tensor([0]))


def test_gpt_rejects_bad_lengths():
    model = _tiny_gpt()
    with pytest.raises(ValueError, match="max_seq_length"):
        model.set_kv_cache(batch_size=1, max_seq_length=17)
    with pytest.raises(ValueError, match="exceeds `max_seq_length`"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="`n_head` must divide `n_embd`"):
        GPT(vocab_size=5, block_size=4, n_head=3, n_embd=16)


def test_the_monitor_samples_the_network_in_self_model_with_its_cache():
    from lightning_gen.decoding.adapters import LitGPTAdapter, resolve_adapter
    from lightning_gen.monitor.network import find_network

    module = CharGPT(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=16).eval()
    network = find_network(module)
    assert network.called is module.model and network.name == "pl_module.model"
    assert isinstance(resolve_adapter(network.called), LitGPTAdapter)
    assert not hasattr(module, "set_kv_cache")  # nothing forwarded by hand
    with pytest.raises(ValueError, match="vocab_size"):
        module.tokenizer = CharTokenizer("abc")


def test_char_tokenizer_round_trips_and_rejects_unknown_characters():
    tokenizer = CharTokenizer("hello, world\n")
    assert tokenizer.chars == "\n ,dehlorw"  # ids follow the sorted alphabet
    assert tokenizer.eos_token_id == 10 and tokenizer.vocab_size == 11 and tokenizer.pad_token_id is None
    ids = tokenizer.encode("low, world")
    assert ids == [6, 7, 9, 2, 1, 9, 7, 8, 6, 3]
    assert tokenizer.decode(ids) == "low, world"
    assert tokenizer.decode(torch.tensor(ids + [10])) == "low, world<|endoftext|>"  # the end of a document
    assert tokenizer.encode(tokenizer.chars) == list(range(tokenizer.vocab_size - 1))  # text never encodes to EOS
    with pytest.raises(ValueError, match="'z'"):
        tokenizer.encode("hello z")


def test_char_datamodule_windows(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("abcdefghij\n\n" * 20, encoding="utf-8")  # 20 paragraphs: 11 tokens each with its EOS
    dm = CharDataModule(str(corpus), block_size=8, batch_size=4, val_fraction=0.2)
    assert dm.tokenizer.vocab_size == 12  # available before `setup`: 10 letters, the newline, the EOS
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 8)
    torch.testing.assert_close(x[:, 1:], y[:, :-1])  # y is x shifted by one character
    # Held out from the first paragraph start past 80% of the 220 tokens (176): a window per paragraph.
    assert dm.val_data.starts == [0, 11, 22, 33] and len(dm.train_data) == len(range(0, 176 - 8, 4))
    assert dm.tokenizer.decode(dm.val_data.data[:12]) == "abcdefghij<|endoftext|>a"  # each paragraph ends with EOS
    with pytest.raises(FileNotFoundError, match="corpus"):
        CharDataModule(str(tmp_path / "missing.txt"))


def test_validation_windows_start_at_prose_paragraphs_first():
    dm = CharDataModule(block_size=128)  # CPython's pydoc topics, as the example trains on them
    dm.setup("fit")
    assert 40 <= dm.val_prose < len(dm.val_data)  # prose first, then the other paragraphs
    heads = [dm.tokenizer.decode(dm.val_data[i][0]).split("<|endoftext|>")[0] for i in range(len(dm.val_data))]
    assert all(is_prose(head) for head in heads[: dm.val_prose])
    assert not any(is_prose(head) for head in heads[dm.val_prose:])
    assert any(head.startswith("+--") or head[0].isdigit() for head in heads[dm.val_prose:])  # what is kept out


def test_cli_fit_writes_tensorboard_events_and_a_resumable_checkpoint(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setattr(sys, "argv", ["pretrain.py"])  # pytest's own arguments are not for the CLI

    args = [
        "fit",
        "--config", str(EXAMPLES / "config.yaml"),
        "--trainer.max_steps=3",
        "--trainer.val_check_interval=3",
        "--trainer.limit_val_batches=1",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--model.n_layer=1",
        "--model.n_embd=32",
        "--data.block_size=120",  # leaves room for the monitor's 96 new tokens once it is enabled
        "--data.batch_size=4",
    ]
    cli = cli_main(args)
    assert cli.trainer.global_step == 3
    assert cli.model.model.max_seq_length == 120  # linked from data.block_size
    assert cli.model.tokenizer is cli.datamodule.tokenizer

    # The monitor's prompts from data are the first validation windows: prose paragraph starts.
    with open(Path(cli.trainer.logger.log_dir) / "samples.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    data_prompts = {r["index"]: r["prompt_ids"] for r in records if r["index"] >= 4}
    assert sorted(data_prompts) == [4, 5] and cli.datamodule.val_prose >= 2
    for i, ids in data_prompts.items():
        assert ids == cli.datamodule.val_data[i - 4][0][: len(ids)].tolist()

    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event files under {tmp_path}"
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    # The TaskMonitor's tasks (examples/tasks/tasks.yaml) at step 0 and at the end: accuracy and bits per byte.
    assert {"train_loss", "val_loss", "eval/word_order/acc", "eval/held_out/bpb", "eval/core"} <= set(
        accumulator.Tags()["scalars"])
    assert [e.step for e in accumulator.Scalars("eval/word_order/acc")] == [0, 3]

    checkpoint = next(tmp_path.rglob("*.ckpt"))
    restored = CharGPT.load_from_checkpoint(checkpoint)
    assert restored.tokenizer.chars == cli.datamodule.tokenizer.chars
    # After `fit` the trained model is back on the CPU; the checkpoint restores to the device it was saved from.
    torch.testing.assert_close(restored.model.wte.weight.cpu(), cli.model.model.wte.weight.cpu())

    resumed = cli_main(args + ["--trainer.max_steps=4", f"--ckpt_path={checkpoint}"])  # later flags win
    assert resumed.trainer.global_step == 4
