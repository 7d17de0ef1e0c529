"""Colour and terminals, shell completion, ``python -m feat3d`` and examples in every help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner, Result

from feat3d.backbones import get_backbone, save_checkpoint
from feat3d.cli import cli
from tests.videos import write_video

ANSI = re.compile(r"\x1b\[")
# SGR sequences that set a foreground or background colour (bold, italic... are not colour).
COLOUR = re.compile(r"\x1b\[(?:[0-9]+;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9]+)*m")
TERMINAL_ENV = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TERMINAL_ENV:
        monkeypatch.delenv(name, raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="feat3d", catch_exceptions=False)


# ---------------------------------------------------------------------------------------------
# Colour and TTY


def extract_twice(tmp_path: Path, env: dict[str, str]) -> str:
    """Output of an extract run and of a resumed one (which prints how many it skipped)."""
    clip = write_video(tmp_path / "clip.mp4", n_frames=16, width=32, height=32)
    out = tmp_path / f"f{len(list(tmp_path.glob('*.h5')))}.h5"
    args = ["extract", str(clip), "-o", str(out), "-m", "resnet-10", "--weights", "none"]
    args += ["--size", "32", "--crop", "32", "-j", "0"]
    first = run(*args, env=env)
    second = run(*args, env=env)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    return first.output + second.output


def test_not_a_terminal_gives_plain_lines(tmp_path: Path) -> None:
    output = extract_twice(tmp_path, env={})
    assert "[1/1] clip.mp4: 1 clips" in output  # a line per video instead of a bar
    assert "resuming: 1 video(s) already complete" in output
    for args in (["models", "resnet-1*"], ["weights"], ["train", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and not ANSI.search(result.output), args


def test_no_color_removes_colour_even_on_a_terminal(tmp_path: Path) -> None:
    forced = extract_twice(tmp_path, env={"FORCE_COLOR": "1"})  # rich: behave as a terminal
    assert COLOUR.search(forced), "the control run should be coloured"
    plain = extract_twice(tmp_path, env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "resuming" in plain and not COLOUR.search(plain)
    empty = extract_twice(tmp_path, env={"FORCE_COLOR": "1", "NO_COLOR": ""})
    assert COLOUR.search(empty)  # no-color.org: only a non-empty value counts


def test_no_color_and_not_a_terminal_never_write_escape_codes(tmp_path: Path) -> None:
    output = extract_twice(tmp_path, env={"NO_COLOR": "1"})
    assert output and not ANSI.search(output)
    result = run("weights", "download", "resnet-18-kinetics", env={"NO_COLOR": "1"})
    assert result.exit_code == 1 and not ANSI.search(result.output)


# ---------------------------------------------------------------------------------------------
# Shell completion


def complete(words: str, monkeypatch: pytest.MonkeyPatch | None = None) -> list[str]:
    """What click's bash completion answers for the command line ``words``."""
    parts = words.split(" ")
    env = {
        "_FEAT3D_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1),
    }
    result = run(env=env)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_completion_of_commands_and_subcommands() -> None:
    replies = complete("feat3d ")
    for command in ("extract", "classify", "train", "weights", "models"):
        assert f"plain,{command}" in replies
    assert complete("feat3d weights d") == ["plain,download"]


def test_completion_of_model_and_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replies = complete("feat3d extract --model resnet-1")
    assert {"plain,resnet-10", "plain,resnet-18"} <= set(replies)
    assert "plain,r3d_18" not in replies

    monkeypatch.setenv("FEAT3D_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    save_checkpoint(get_backbone("resnet-10", num_classes=2), tmp_path / "tiny.pt")
    assert run("weights", "add", str(tmp_path / "tiny.pt")).exit_code == 0
    replies = complete("feat3d classify --weights ti")
    assert "plain,tiny" in replies and "file,ti" in replies  # names, then files
    assert "plain,r3d_18.kinetics400_v1" in complete("feat3d classify -w r3d")
    assert "plain,tiny" in complete("feat3d train --pretrained t")
    assert complete("feat3d weights remove t") == ["plain,tiny"]
    assert complete("feat3d weights download mc") == ["plain,mc3_18.kinetics400_v1"]


def test_python_m_feat3d_and_the_completion_script() -> None:
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_ENV}
    root = Path(__file__).parents[1]
    help_run = subprocess.run(
        [sys.executable, "-m", "feat3d", "--help"],
        capture_output=True, text=True, env=env, cwd=root, timeout=120,
    )  # fmt: skip
    assert help_run.returncode == 0 and "Usage: feat3d" in help_run.stdout
    source = subprocess.run(
        [sys.executable, "-m", "feat3d"],
        capture_output=True, text=True, env={**env, "_FEAT3D_COMPLETE": "bash_source"},
        cwd=root, timeout=120,
    )  # fmt: skip
    assert source.returncode == 0
    assert "_feat3d_completion()" in source.stdout and "_FEAT3D_COMPLETE" in source.stdout


# ---------------------------------------------------------------------------------------------
# Help


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        paths.append(path)
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, path))
    return paths


def test_every_command_help_ends_with_an_example() -> None:
    paths = command_paths(cli)
    assert ("weights", "add") in paths and ("extract",) in paths
    for path in [(), *paths]:
        result = run(*path, "--help", env={"COLUMNS": "100"})
        assert result.exit_code == 0, path
        text = result.output
        assert re.search(r"^\s*Examples?:$", text, re.MULTILINE), path
        examples = text[re.search(r"^\s*Examples?:$", text, re.MULTILINE).end() :]
        first = examples.strip().splitlines()[0].strip()
        # \b kept the example on its own line, and it runs this very command.
        assert first.startswith(" ".join(("feat3d", *path))), (path, first)
        assert "--config" in text or path == ()
