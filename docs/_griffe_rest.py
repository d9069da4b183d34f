"""A griffe extension for the docs site: the library's reST-ish docstrings rendered as Markdown.

The docstrings are written for readers of the source and for doctest: Sphinx roles
(``:class:`~cps_engine.ledger.Ledger```), ``>>>`` examples and ``::`` literal blocks. Rather than
rewrite them, the site converts them when it loads them:

- a role becomes a cross-reference to the object when the site documents it, else code
  (an ``optional`` autoref: never a broken link, never a warning);
- a run of ``>>>`` / ``...`` lines and their output becomes a ``pycon`` code block;
- ``text::`` before an indented block becomes ``text:`` (the indented block is already code).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const):`([^`]+)`")


def _target(obj: griffe.Object, name: str) -> str:
    head, _, tail = name.partition(".")
    if head in ("cps_engine", "sqlalchemy", "pandas", "polars", "pyarrow", "dask", "numpy", "datetime",
                "fractions", "decimal", "typing", "collections", "pathlib"):
        return name
    for scope in (obj, obj.parent, obj.module):
        if scope is None:
            continue
        try:
            full = scope.resolve(head)
        except Exception:  # a name this scope does not know: try the next one
            continue
        return f"{full}.{tail}" if tail else full
    return name


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    text = match.group(1).strip()
    titled = re.fullmatch(r"(.*?)\s*<([^>]+)>", text)
    if titled:
        title, name = titled.group(1), titled.group(2)
    else:
        name = text.lstrip("~!")
        title = name.rsplit(".", 1)[-1] if text.startswith("~") else name
    name = name.removesuffix("()")
    target = _target(obj, name)
    return (f'<autoref identifier="{html.escape(target)}" optional><code>{html.escape(title)}</code></autoref>')


def _doctest_blocks(text: str) -> str:
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
                i += 1
            out += [f"{indent}```pycon", *(f"{indent}{b}" for b in block), f"{indent}```"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _literal_blocks(text: str) -> str:
    # "text::" -> "text:", and "::" alone on a line -> nothing; the indented block that follows is code
    text = re.sub(r"(?m)^(\s*)::\s*$", "", text)
    return re.sub(r"(?m)(\S)::\s*$", r"\1:", text)


class RestToMarkdown(griffe.Extension):
    """Convert each docstring once, when griffe loads the object."""

    def on_instance(self, *, obj: griffe.Object, **_: Any) -> None:
        if obj.docstring is None:
            return
        text = obj.docstring.value
        text = _doctest_blocks(text)
        text = _literal_blocks(text)
        obj.docstring.value = _ROLE.sub(lambda m: _role(obj, m), text)
