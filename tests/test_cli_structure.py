"""The shape of the command line: each option declared once, small command modules, every
command listed, and the options every model-running command shares."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

import feat3d
from feat3d.cli import COMMANDS, cli

PACKAGE = Path(feat3d.__file__).parent
SOURCES = [
    PACKAGE / "cli.py",
    PACKAGE / "cli_video.py",
    *sorted((PACKAGE / "commands").glob("*.py")),
]


def declared_names(path: Path) -> list[str]:
    """The option names (``--name``) given as positional arguments of any call in ``path``:
    each ``click.option``/``click.Option`` declaration and each shared option's name."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            names += [
                arg.value
                for arg in node.args
                if isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.startswith("--")
            ]
    return names


def test_every_option_name_is_declared_once() -> None:
    counts = Counter(name for path in SOURCES for name in declared_names(path))
    assert "--precision" in counts and "--workers" in counts
    assert [name for name, count in counts.items() if count > 1] == []


def test_same_name_same_type_default_and_help_across_commands() -> None:
    """Where commands share an option, they share its declaration: the type's class is the
    same (--crop, --workers, --precision), whatever default a command gives it. ``--json``
    is a flag (print JSON) in some commands and a file in others, by design."""
    seen: dict[str, type] = {"--json": object}
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        for param in command.params:
            for opt in param.opts:
                kind = type(param.type)
                if opt.startswith("--") and opt != "--json":
                    assert seen.setdefault(opt, kind) is kind, (name, opt)


def function_lengths(path: Path) -> dict[str, int]:
    """Lines of code of each function, its docstring excluded."""
    lengths = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            lengths[node.name] = (body[-1].end_lineno or 0) - body[0].lineno + 1 if body else 0
    return lengths


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.name)
def test_modules_and_functions_are_small(path: Path) -> None:
    if path.parent.name == "commands" and path.stem in {
        m.split(":")[0].split(".")[-1] for m in COMMANDS.values()
    }:
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 100, path.name
    too_long = {name: n for name, n in function_lengths(path).items() if n > 80}
    assert too_long == {}, path.name


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="feat3d")
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed, name


def test_cli_imports_no_command_module() -> None:
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    modules = [
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level + len(node.module or "") > 0
    ]
    imported = [
        name.name for node in ast.walk(tree) if isinstance(node, ast.Import) for name in node.names
    ]
    assert not [m for m in [*modules, *imported] if "commands" in m]


@pytest.mark.parametrize("command", ["extract", "classify", "evaluate", "train"])
def test_precision_auto_and_compile_are_accepted(command: str) -> None:
    params = {param.name: param for param in cli.get_command(None, command).params}  # type: ignore[union-attr]
    assert "auto" in params["precision"].type.choices  # type: ignore[attr-defined]
    compile_flag = next(p for p in params.values() if "--compile" in p.opts)
    assert compile_flag.is_flag  # type: ignore[attr-defined]
    arguments = {
        "extract": ["v.mp4", "-o", "o.h5"],
        "classify": ["v.mp4"],
        "evaluate": [__file__, str(PACKAGE)],
        "train": [str(PACKAGE), "-o", "run"],
    }
    context = cli.get_command(None, command).make_context(  # type: ignore[union-attr]
        command, [*arguments[command], "--precision", "auto", "--compile"]
    )  # fmt: skip
    assert context.params["precision"] == "auto" and context.params["compile_model"] is True
