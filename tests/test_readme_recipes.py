"""The README's recipes are real command lines: every option exists and every value parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from feat3d.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _recipes() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Recipes for published feature sets", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the recipes section has no bash block"
    joined = block.group(1).replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("feat3d ")]


RECIPES = _recipes()


def test_the_recipes_section_lists_the_protocols():
    commands = [" ".join(args) for args in RECIPES]
    assert len(RECIPES) >= 7
    for needle in ("--segments 32", "--crops 10", "--streams rgb,flow", "--every 1",
                   "--window centred", "--clips-per-video", "--annotation"):  # fmt: skip
        assert any(needle in command for command in commands), needle


@pytest.mark.parametrize("args", RECIPES, ids=[" ".join(a[:2]) for a in RECIPES])
def test_recipe_parses(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for arg in args:  # the files and folders a recipe names exist, empty
        if arg.endswith("/"):
            Path(arg).mkdir(parents=True, exist_ok=True)
        elif re.search(r"\.(pickle|pt|pth|json)$", arg) and not arg.startswith("-"):
            Path(arg).write_bytes(b"")
    name, rest = args[0], args[1:]
    with click.Context(cli) as ctx:
        command = cli.get_command(ctx, name)
        assert command is not None, name
        sub = command.make_context(name, list(rest), parent=ctx)  # raises on a bad option
        assert sub.params  # parsed into the command's parameters
