"""Griffe extension: read feat3d's docstring conventions as mkdocstrings expects them.

The docstrings are Google style with three habits griffe does not read as meant, so this
rewrites the text griffe parses (the source files are not touched):

- an ``Example:`` section: griffe takes only ``Examples:`` as doctests, and shows anything
  else as prose, where ``>>>`` lines become nested quotes;
- Sphinx roles (``:func:`~feat3d.io.iter_frames```), which Markdown shows verbatim: they
  become code spans;
- one ``Args:`` entry for several parameters (``start, end: ...``), possibly wrapped over
  lines: it becomes one entry per parameter with the shared description.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj):`(~?)([\w.]+)`")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Attributes):\s*$")
_GROUP = re.compile(r"^(\s+)(\w+(?:,\s*\w+)+):\s+(.*)$")


def _role_to_code(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_groups(lines: list[str]) -> list[str]:
    out: list[str] = []
    section_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        heading = _SECTION.match(line)
        if heading:
            section_indent = len(heading.group(1))
        elif section_indent is not None and line.strip() and _indent(line) <= section_indent:
            section_indent = None
        if section_indent is None or heading:
            out.append(line)
            continue
        # A name list wrapped over lines ends each line with a comma.
        while line.rstrip().endswith(",") and i < len(lines):
            line = f"{line.rstrip()} {lines[i].strip()}"
            i += 1
        group = _GROUP.match(line)
        if not group:
            out.append(line)
            continue
        more: list[str] = []
        while i < len(lines) and lines[i].strip() and _indent(lines[i]) > len(group.group(1)):
            more.append(lines[i])
            i += 1
        for name in re.split(r",\s*", group.group(2)):
            out += [f"{group.group(1)}{name}: {group.group(3)}", *more]
    return out


def rewrite(text: str) -> str:
    """Return ``text`` as griffe's Google parser should read it (see the module docstring)."""
    text = _ROLE.sub(_role_to_code, _EXAMPLE.sub(r"\1Examples:", text))
    return "\n".join(_split_groups(text.split("\n")))


class FeatDocstrings(griffe.Extension):
    """Apply `rewrite` to every docstring as its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
