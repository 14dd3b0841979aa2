"""The layers of the package, as the tree shows them: no layer imports one above it.

decoding (torch, transformers) <- text <- evaluation <- monitor (Lightning); the viewer stands beside the monitor
and reads what it wrote, without torch. Each import runs in a fresh interpreter, so nothing imported by another test
can hide a violation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _imported_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("from lightning_gen import generate", {"lightning", "pytorch_lightning"}),
        ("import lightning_gen.decoding.generation, lightning_gen.decoding.batching, lightning_gen.decoding.scoring",
         {"lightning", "pytorch_lightning"}),
        ("import lightning_gen.text.tokenization, lightning_gen.text.prompts", {"lightning", "pytorch_lightning"}),
        ("import lightning_gen.decoding.likelihood", {"lightning", "pytorch_lightning"}),
        # The evaluation layer scores with the decoding layer and reads text; never Lightning, never the monitor.
        ("import lightning_gen.evaluation.loglikelihood, lightning_gen.evaluation.tasks",
         {"lightning", "pytorch_lightning", "lm_eval"}),
        ("from lightning_gen import loglikelihood", {"lightning", "pytorch_lightning", "lm_eval"}),
        ("import lightning_gen.evaluation.metrics, lightning_gen.evaluation.specs, lightning_gen.evaluation.formats, "
         "lightning_gen.text.task_records", {"torch", "transformers", "lightning"}),
        ("import lightning_gen.text.rendering, lightning_gen.text.records, lightning_gen.text.tables, "
         "lightning_gen.text.quality, lightning_gen.text.samples, lightning_gen.text.visible, lightning_gen.text.diff, "
         "lightning_gen.text.json_lines", {"torch", "transformers", "lightning"}),
        ("import lightning_gen.viewer.cli, lightning_gen.viewer.show, lightning_gen.viewer.export",
         {"torch", "transformers", "lightning"}),
        ("import lightning_gen", {"torch", "transformers", "lightning"}),
        # TensorBoard imports the dashboard's plugin at start-up: a heavy or broken import there breaks TensorBoard.
        ("import lightning_gen.viewer.tensorboard.plugin", {"torch", "transformers", "lightning"}),
    ],
)
def test_a_layer_never_imports_the_layers_above_it(statement, forbidden):
    assert not _imported_after(statement) & forbidden


def test_the_public_names_resolve_lazily_to_their_homes():
    import lightning_gen

    for name in lightning_gen.__all__:
        assert getattr(lightning_gen, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lightning_gen.nope  # noqa: B018
