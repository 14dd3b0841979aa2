"""Tiny task files written by the tests, in our formats and as lm-eval task YAMLs over the same files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tiny import CORPUS

from lightning_gen import generate
from lightning_gen.evaluation.encoding import RequestEncoder

_SENTENCES = [s.strip() for text in CORPUS[:60] for s in text.replace("\n", " ").split(". ") if 20 < len(s) < 160]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def multiple_choice_rows(count: int = 12, seed: int = 0) -> list[dict]:
    """Sentence openings; the choices are the true ending and endings of other sentences (2 to 4 choices)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        sentences = rng.sample(_SENTENCES, 4)
        cut = [s.split(" ") for s in sentences]
        query = " ".join(cut[0][:len(cut[0]) // 2])
        choices = [" ".join(words[len(words) // 2:]) for words in cut][:rng.randint(2, 4)]
        gold = rng.randrange(len(choices))
        choices[0], choices[gold] = choices[gold], choices[0]
        rows.append({"query": query, "choices": choices, "gold": gold})
    return rows


def schema_rows(count: int = 8, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.sample(_SENTENCES, 2)
        words = a.split(" ")
        options = [" ".join(words[:len(words) // 2]), " ".join(b.split(" ")[:len(words) // 2])]
        rows.append({"context_options": options, "continuation": " ".join(words[len(words) // 2:]), "gold": 0})
    return rows


def language_modeling_rows(count: int = 8, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for sentence in rng.sample(_SENTENCES, count):
        words = sentence.split(" ")
        rows.append({"context": " ".join(words[:-1]), "continuation": words[-1]})
    return rows


def greedy_lm_rows(model, tokenizer, count: int) -> list[dict]:
    """Language-modelling examples, half of them (those that fit the model) continued the model's own greedy way."""
    encoder, rows = RequestEncoder(tokenizer), []
    for i, row in enumerate(language_modeling_rows(2 * count)[:count]):
        ids = encoder.encode(row["context"])
        if i % 2 == 0 and len(ids) + 2 <= model.config.n_positions:
            new = generate(model, torch.tensor([ids]), max_new_tokens=2, do_sample=False)[0, len(ids):]
            text = tokenizer.decode(new)
            if text.strip() and encoder.pair(row["context"], text) == (ids, new.tolist()):
                row = {"context": row["context"], "continuation": text}
        rows.append(row)
    return rows


_LM_EVAL_FORMATS = {  # our type: lm-eval's output type, doc_to_text, doc_to_target, doc_to_choice, metrics
    "multiple_choice": ("multiple_choice", '"{{query}}"', '"{{gold}}"', '"{{choices}}"', ["acc", "acc_norm"]),
    "schema": ("multiple_choice", '"{{gold}}"', '"{{continuation}}"', '"{{context_options}}"', ["acc", "acc_norm"]),
    "language_modeling": ("loglikelihood", '"{{context}}"', '"{{continuation}}"', None, ["acc"]),
    # Rows {"text"}: each scored whole, in rolling windows.
    "bits_per_byte": ("loglikelihood_rolling", '""', '"{{text}}"', None, ["bits_per_byte"]),
    # Rows {"prompt", "answer"}: text generated until a stop string.
    "generation": ("generate_until", '"{{prompt}}"', '"{{answer}}"', None, ["exact_match"]),
}


def write_lm_eval_task(folder: Path, name: str, data: Path | dict[str, Path], task_type: str, *,
                       metrics: list[str] | None = None, **fields) -> Path:
    """An lm-eval task YAML over JSON Lines files of ours (``data``: the test split's, or a file per split), read
    offline by `datasets`' json builder; ``fields``: more of the task's fields (``num_fewshot=2``), as JSON."""
    output, text, target, choice, default_metrics = _LM_EVAL_FORMATS[task_type]
    splits = data if isinstance(data, dict) else {"test": data}
    lines = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:",
             *(f"    {split}: {path}" for split, path in splits.items()),
             f"  cache_dir: {folder / 'datasets'}", "test_split: test", f"output_type: {output}",
             f"doc_to_text: {text}", f"doc_to_target: {target}"]
    if choice:
        lines.append(f"doc_to_choice: {choice}")
    lines += [f"{key}: {json.dumps(value)}" for key, value in fields.items()]
    lines += ["metric_list:"] + [f"  - metric: {metric}" for metric in metrics or default_metrics]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
