"""MkDocs hooks: what the site shows differently from GitHub.

- Links from a page to a file of the repository outside the site (``../../benchmarks/README.md``): on GitHub such a
  link opens the file; the built site has no copy of it, and MkDocs would report it as a broken link. So in the
  site it becomes a link into the repository when ``repo_url`` is set in ``mkdocs.yml``, else the file's path
  shown as code. That each such file exists is checked by ``tests/test_docs.py``.
- Docstrings end a paragraph with ``::`` before an example, as Lightning's do (reStructuredText's mark of a
  literal block): in the API reference it reads as one colon, as Sphinx shows it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# A paragraph of a docstring that ends with reStructuredText's "::" (``Example::``).
_LITERAL_MARK = re.compile(r"(<p>[^<]*[^:<\s])::</p>")
# A markdown link `[text](target)` whose target is relative: no scheme, no leading slash, not an anchor alone.
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>(?![a-z][a-z0-9+.-]*:|/|#)[^)\s]+)\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs = Path(config.docs_dir).resolve()
    root = Path(config.config_file_path).resolve().parent.parent  # the repository: the folder above docs/
    here = (docs / page.file.src_uri).parent
    repo_url = (config.repo_url or "").rstrip("/")

    def replace(match: re.Match[str]) -> str:
        target = Path(os.path.normpath(here / match["target"].split("#")[0]))
        if target.is_relative_to(docs) or not target.is_relative_to(root):
            return match[0]  # a page of the site: MkDocs checks it
        path = target.relative_to(root).as_posix()
        if repo_url:
            return f"[{match['text']}]({repo_url}/blob/HEAD/{path})"
        return match["text"] if path in match["text"] else f"{match['text']} (`{path}`)"

    return _LINK.sub(replace, markdown)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return _LITERAL_MARK.sub(r"\1:</p>", html)
