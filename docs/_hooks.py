"""mkdocs hooks: pages made of text that lives elsewhere in the repository, included at build time.

``<!-- include: README.md#Section title -->`` is replaced by that section of the README (its body,
up to the next heading of the same level); ``<!-- include: CHANGELOG.md -->`` by the whole file
without its first heading. So the site never holds a stale copy of either.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_INCLUDE = re.compile(r"<!--\s*include:\s*([^#\s]+)(?:#(.+?))?\s*-->")


def _section(text: str, title: str, source: str) -> str:
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.M)
    if match is None:
        raise ValueError(f"{source} has no section {title!r} (included by the docs site)")
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def _include(match: re.Match[str]) -> str:
    name, title = match.group(1), match.group(2)
    text = (ROOT / name).read_text(encoding="utf-8")
    # a README section, or a whole file less its title (the page has its own)
    body = _section(text, title.strip(), name) if title else re.sub(r"\A# .*\n", "", text)
    # links relative to the repository root become links inside the site (docs/x.md -> x.md)
    return re.sub(r"\]\(docs/", "](", body)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return _INCLUDE.sub(_include, markdown)


def on_config(config: Any, **_: Any) -> Any:
    """The service page (docs/service.md, written alongside) joins the nav once it exists."""
    nav = config.get("nav")
    if nav and (Path(config["docs_dir"]) / "service.md").exists():
        listed = any("service.md" in str(item) for item in nav)
        if not listed:
            at = next((i + 1 for i, item in enumerate(nav) if "compliance.md" in str(item)), len(nav))
            nav.insert(at, {"HTTP service": "service.md"})
    return config
