"""The README and the docs site say what is true where a test can tell: the quickstart's three commands, every
relative link and picture, every public name in the API reference, and the YAML a user copies builds a monitor.

`mkdocs build --strict` (in CI, `.ci/run`) checks the site itself: the navigation, the anchors between pages and
the reference generated from the docstrings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.cli import LightningCLI
from tiny import TinyLM

import lightning_gen
from lightning_gen import GenerationMonitor

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = ROOT / "docs" / "pages"
DOCUMENTS = [README, *sorted(PAGES.rglob("*.md"))]
QUICKSTART = [
    'pip install -e ".[dev]"',
    "python examples/pretrain.py fit --config examples/config.yaml",
    "python -m pytest -q",
]
# Files another branch of this round writes; a link to one is expected to fail until it has landed. Remove an entry
# once the file is in the repository: from then on a missing file is a failure again.

_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
_LINK = re.compile(r"\[(?:[^\]]*)\]\((?P<target>[^)\s]+)\)")
_IMG = re.compile(r"<img\s[^>]*src=\"(?P<target>[^\"]+)\"")


def _prose(text: str) -> str:
    """``text`` without its fenced code blocks, where brackets and parentheses are code, not links."""
    return _FENCE.sub("", text)


def _section(text: str, title: str) -> str:
    start = re.search(rf"^## {re.escape(title)}\n", text, re.M)
    assert start, f"no '## {title}' section"
    end = re.search(r"^## ", text[start.end():], re.M)
    return text[start.end(): start.end() + end.start() if end else len(text)]


def _slug(heading: str) -> str:
    """The anchor of a heading, as both GitHub and MkDocs' toc make it for plain headings."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text)).strip("-")


def _anchors(path: Path) -> set[str]:
    """The headings' anchors, and those mkdocstrings makes for each ``::: lightning_gen.name`` it documents."""
    text = _prose(path.read_text())
    return ({_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}
            | {m.group(1) for m in re.finditer(r"^::: (lightning_gen(?:\.\w+)+)$", text, re.M)})


def _relative_targets() -> list[tuple[str, Path, str]]:
    found = []
    for document in DOCUMENTS:
        prose = _prose(document.read_text())
        for match in [*_LINK.finditer(prose), *_IMG.finditer(prose)]:
            target = match["target"]
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL, or an anchor of the same page (MkDocs checks those)
            found.append((str(document.relative_to(ROOT)), document, target))
    return found


# ----------------------------------------------------------------------------------------------- the quickstart
def test_the_quickstart_is_three_commands_set_up_run_test():
    quickstart = _section(README.read_text(), "Quickstart")
    blocks = [m for m in _FENCE.finditer(quickstart) if m["lang"] in ("bash", "sh", "shell")]
    assert len(blocks) == 1, "the quickstart has one block of commands"
    commands = [line.split("  #")[0].strip() for line in blocks[0]["body"].splitlines()]
    assert [c for c in commands if c and not c.startswith("#")] == QUICKSTART


def test_the_quickstart_says_what_a_machine_without_a_gpu_installs_first():
    quickstart = _section(README.read_text(), "Quickstart")
    before = quickstart[: _FENCE.search(quickstart).start()]
    assert "https://download.pytorch.org/whl/cpu" in before and "pip install torch" in before


# ----------------------------------------------------------------------------------------------- links and pictures
@pytest.mark.parametrize(
    ("document", "target"),
    [pytest.param(name, target, id=f"{name}->{target}") for name, _, target in _relative_targets()],
)
def test_every_relative_link_and_picture_exists(document, target):
    source = ROOT / document
    path, _, anchor = target.partition("#")
    resolved = (source.parent / path).resolve()
    assert resolved.is_relative_to(ROOT), f"{document} links outside the repository: {target}"
    assert resolved.exists(), f"{document} links to {target}, which does not exist"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{document} links to {target}: no such heading in {path}"


def test_the_readme_shows_both_dashboard_screenshots():
    pictures = {Path(m["target"]).name for m in re.finditer(r"!\[[^\]]*\]\((?P<target>[^)]+)\)", README.read_text())}
    assert {"dashboard-grid.png", "dashboard-compare.png"} <= pictures


# ----------------------------------------------------------------------------------------------- the API reference
def test_every_public_name_has_its_reference_and_only_those():
    documented = {m.group(1) for page in (PAGES / "reference").glob("*.md")
                  for m in re.finditer(r"^::: lightning_gen\.(\w+)$", page.read_text(), re.M)}
    assert documented == set(lightning_gen.__all__)


# ----------------------------------------------------------------------------------------------- the YAML a user copies
def _monitor_yamls() -> list[tuple[str, str]]:
    return [(str(document.relative_to(ROOT)), m["body"]) for document in DOCUMENTS
            for m in _FENCE.finditer(document.read_text())
            if m["lang"] == "yaml" and "lightning_gen.GenerationMonitor" in m["body"]]


@pytest.mark.parametrize(("document", "body"), _monitor_yamls(), ids=[name for name, _ in _monitor_yamls()])
def test_each_yaml_example_builds_the_monitor_it_describes(tmp_path, document, body):
    config = tmp_path / "config.yaml"
    config.write_text(body)
    arguments = ["--config", str(config), "--seed_everything=false", "--trainer.logger=false",
                 "--trainer.enable_progress_bar=false"]
    cli = LightningCLI(TinyLM, run=False, args=arguments)
    monitors = [c for c in cli.trainer.callbacks if isinstance(c, GenerationMonitor)]
    assert len(monitors) == 1
    monitor = monitors[0]
    written = next(c["init_args"] for c in yaml.safe_load(body)["trainer"]["callbacks"]
                   if c["class_path"] == "lightning_gen.GenerationMonitor")
    for name, value in written.items():
        if name == "prompts":
            assert [p.text for p in monitor.prompts] == value
        elif name == "generation":
            assert {k: monitor.generation[k] for k in value} == value
        elif name == "logits_processors":
            assert [type(p).__name__ for p in monitor.logits_processors] == [
                p["class_path"].rsplit(".", 1)[1] for p in value]
        else:
            assert getattr(monitor, name) == value, name


def _task_monitor_yamls() -> list[tuple[str, str]]:
    return [(str(document.relative_to(ROOT)), m["body"]) for document in [*DOCUMENTS, ROOT / "examples/config.yaml"]
            for m in (_FENCE.finditer(document.read_text()) if document.suffix == ".md"
                      else [{"lang": "yaml", "body": document.read_text()}])
            if m["lang"] == "yaml" and "lightning_gen.TaskMonitor" in m["body"]]


@pytest.mark.parametrize(("document", "body"), _task_monitor_yamls(), ids=[name for name, _ in _task_monitor_yamls()])
def test_each_yaml_example_of_the_task_monitor_builds_it_with_its_tasks(tmp_path, document, body, monkeypatch):
    from lightning_gen import TaskMonitor

    monkeypatch.chdir(ROOT)  # task lists are named from the repository's root, as the README's commands run
    config = yaml.safe_load(body)
    config = {"trainer": {"callbacks": [c for c in config["trainer"]["callbacks"]
                                        if c["class_path"] == "lightning_gen.TaskMonitor"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    arguments = ["--config", str(tmp_path / "config.yaml"), "--seed_everything=false", "--trainer.logger=false"]
    cli = LightningCLI(TinyLM, run=False, args=arguments)
    monitors = [c for c in cli.trainer.callbacks if isinstance(c, TaskMonitor)]
    assert len(monitors) == 1 and [spec.name for spec in monitors[0].tasks]
