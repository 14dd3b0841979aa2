"""`LightningGenLM` in lm-eval's own `simple_evaluate`, offline over local task files: the same results as lm-eval's
``HFLM(logits_cache=False)`` on a transformers model, any task on a plain torch model, and a helpful ImportError
without lm-eval."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from local_tasks import multiple_choice_rows, write_jsonl, write_lm_eval_task
from tiny import CORPUS, GPTConfig, NanoGPT, init_weights, tiny_gpt2

from lightning_gen.lm_eval import LightningGenLM

TASKS = ["local_mc", "local_docs", "local_complete"]


def _write_tasks(folder):
    write_jsonl(folder / "mc.jsonl", multiple_choice_rows(10))
    write_lm_eval_task(folder, "local_mc", folder / "mc.jsonl", "multiple_choice")
    write_jsonl(folder / "docs.jsonl", [{"text": text[:500]} for text in CORPUS[5:9]])
    write_lm_eval_task(folder, "local_docs", folder / "docs.jsonl", "bits_per_byte")
    write_jsonl(folder / "complete.jsonl", [{"prompt": text[:60], "answer": "x"} for text in CORPUS[10:16]])
    write_lm_eval_task(folder, "local_complete", folder / "complete.jsonl", "generation",
                       generation_kwargs={"until": ["."], "max_gen_toks": 12})
    return TaskManager(include_path=str(folder), include_defaults=False)


def _evaluate(lm, manager):
    return simple_evaluate(model=lm, tasks=TASKS, task_manager=manager, verbosity="ERROR", log_samples=True)


def test_simple_evaluate_gives_hflm_s_results_on_every_kind_of_request(tmp_path, bpe):
    manager = _write_tasks(tmp_path)
    model = tiny_gpt2(len(bpe), n_positions=64)
    tokenizer = copy.deepcopy(bpe)
    ours = _evaluate(LightningGenLM(model, tokenizer=tokenizer, batch_size=4), manager)
    theirs = _evaluate(HFLM(pretrained=model, tokenizer=copy.deepcopy(bpe), logits_cache=False, device="cpu",
                            batch_size=4), manager)
    for task in ("local_mc", "local_docs"):
        for metric, value in theirs["results"][task].items():
            if isinstance(value, float):
                assert ours["results"][task][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (task, metric)
    generated = [sample["resps"] for sample in ours["samples"]["local_complete"]]
    assert generated == [sample["resps"] for sample in theirs["samples"]["local_complete"]]
    assert any(response[0][0] for response in generated)  # not all empty: the model wrote something
    assert (tokenizer.pad_token, tokenizer.padding_side) == (None, "right")  # HFLM sets a pad token; we do not


def test_any_torch_model_runs_any_task(tmp_path):
    class Chars:  # 65 symbols, as the nanoGPT model's tokenizer (its vocabulary is padded to 128)
        symbols = "".join(sorted(set("".join(CORPUS[:20]))))[:64]
        eos_token_id = 64

        def encode(self, text):
            return [self.symbols.index(c) if c in self.symbols else 0 for c in text]

        def decode(self, ids):
            return "".join(self.symbols[i] if i < 64 else "" for i in ids)

    manager = _write_tasks(tmp_path)
    model = init_weights(NanoGPT(GPTConfig(block_size=128)), seed=0).train()
    results = _evaluate(LightningGenLM(model, tokenizer=Chars(), max_gen_toks=12), manager)["results"]
    assert 0.0 <= results["local_mc"]["acc,none"] <= 1.0
    assert results["local_docs"]["bits_per_byte,none"] > 0
    assert "exact_match,none" in results["local_complete"]
    assert model.training  # left as it was


def test_without_lm_eval_the_import_error_names_the_extra():
    code = "import sys; sys.modules['lm_eval'] = None\nimport lightning_gen.lm_eval"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "pip install 'lightning-gen[lm-eval]'" in out.stderr
