"""Tiny task files written by the tests, in our formats and as lm-eval task YAMLs over the same files."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tiny_lms import CORPUS

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


_LM_EVAL_FORMATS = {
    "multiple_choice": ("multiple_choice", '"{{query}}"', '"{{gold}}"', '"{{choices}}"', ["acc", "acc_norm"]),
    "schema": ("multiple_choice", '"{{gold}}"', '"{{continuation}}"', '"{{context_options}}"', ["acc", "acc_norm"]),
    "language_modeling": ("loglikelihood", '"{{context}}"', '"{{continuation}}"', None, ["acc"]),
}


def write_lm_eval_task(folder: Path, name: str, data: Path, task_type: str) -> None:
    """An lm-eval task YAML over a JSON Lines file of ours, read offline by `datasets`' json builder."""
    output, text, target, choice, metrics = _LM_EVAL_FORMATS[task_type]
    lines = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:", f"    test: {data}",
             f"  cache_dir: {folder / 'datasets'}", "test_split: test", f"output_type: {output}",
             f"doc_to_text: {text}", f"doc_to_target: {target}"]
    if choice:
        lines.append(f"doc_to_choice: {choice}")
    lines += ["metric_list:"] + [f"  - metric: {metric}" for metric in metrics]
    (folder / f"{name}.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
