"""``--config FILE.toml``: defaults < file < command line, per-command tables, unknown keys."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
import torch
from click.testing import CliRunner, Result

import feat3d.train
from feat3d.backbones import get_backbone, save_checkpoint
from feat3d.backbones.hub import read_registry
from feat3d.cli import cli
from feat3d.commands import common as command_helpers
from feat3d.config import add_config_option


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="feat3d", catch_exceptions=False)


@pytest.fixture
def train_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """Run ``feat3d train`` up to the call of ``fit`` and collect the options it gets."""
    seen: list[Any] = []

    def fake_fit(split: Any, output: Path, options: Any, **_: Any) -> None:
        seen.append(options)
        raise feat3d.train.TrainError("stopped by the test")

    def fake_split(*_: Any) -> SimpleNamespace:
        return SimpleNamespace(classes=["a", "b"], train=[], val=[])

    monkeypatch.setattr(feat3d.train, "fit", fake_fit)
    monkeypatch.setattr(command_helpers, "load_split", fake_split)
    (tmp_path / "data").mkdir()
    return seen


def train(tmp_path: Path, *args: str) -> Result:
    return run("train", str(tmp_path / "data"), "-o", str(tmp_path / "run"), "-q", *args)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_then_file_then_command_line(tmp_path: Path, train_options: list) -> None:
    config = write(tmp_path / "run.toml", "lr = 0.01\nepochs = 7\nclip-len = 8\nnesterov = true\n")
    result = train(tmp_path)
    assert "stopped by the test" in result.output
    defaults = train_options.pop()
    assert (defaults.lr, defaults.epochs, defaults.clip_len, defaults.nesterov) == (
        None, 200, None, False,
    )  # fmt: skip

    train(tmp_path, "--config", str(config))
    from_file = train_options.pop()
    assert (from_file.lr, from_file.epochs, from_file.clip_len, from_file.nesterov) == (
        0.01, 7, 8, True,
    )  # fmt: skip
    assert from_file.batch_size == defaults.batch_size == 32  # not in the file: default

    # The command line wins, wherever --config stands.
    train(tmp_path, "--epochs", "3", "--config", str(config), "--lr", "0.5")
    both = train_options.pop()
    assert (both.lr, both.epochs, both.clip_len) == (0.5, 3, 8)


def test_command_table_wins_over_top_level(tmp_path: Path, train_options: list) -> None:
    config = write(
        tmp_path / "run.toml",
        "batch-size = 4\nstride = 3  # extract's: ignored by train\n"
        "[train]\nbatch_size = 2\nweight-decay = 0.0005\n"
        "[extract]\nbatch-size = 64\n",
    )
    train(tmp_path, "--config", str(config))
    options = train_options.pop()
    assert (options.batch_size, options.weight_decay) == (2, 0.0005)


def test_unknown_keys_and_tables_name_the_key_and_file(tmp_path: Path, train_options: list) -> None:
    cases = {
        "lrr = 0.1\n": "unknown key 'lrr' at the top level: not an option of any command",
        "[train]\nper-clip = true\n": "unknown key 'per-clip' in [train]: not an option of "
        "feat3d train",
        "[trian]\nlr = 0.1\n": "unknown table [trian]: no such command",
        "[train.more]\nlr = 0.1\n": "unknown table [train.more]: no such command",
    }
    for text, message in cases.items():
        config = write(tmp_path / "bad.toml", text)
        result = train(tmp_path, "--config", str(config))
        assert result.exit_code == 2, result.output
        assert "Error: Invalid value for --config: " in result.output
        assert f"{config}: {message}" in " ".join(result.output.split())
    assert train_options == []  # never got as far as training


def test_bad_value_and_bad_toml_are_usage_errors(tmp_path: Path, train_options: list) -> None:
    result = train(tmp_path, "--config", str(write(tmp_path / "a.toml", "epochs = 0\n")))
    assert result.exit_code == 2 and "--epochs" in result.output
    result = train(tmp_path, "--config", str(write(tmp_path / "b.toml", "epochs = = 1\n")))
    assert result.exit_code == 2
    assert f"{tmp_path / 'b.toml'}: not valid TOML" in " ".join(result.output.split())


def test_every_command_takes_config() -> None:
    def walk(group: click.Group) -> list[click.Command]:
        found = []
        for command in group.commands.values():
            found.append(command)
            if isinstance(command, click.Group):
                found.extend(walk(command))
        return found

    commands = walk(cli)
    assert {"extract", "classify", "train", "add"} <= {c.name for c in commands}
    for command in commands:
        assert [p for p in command.params if p.name == "config"], command.name


def test_subcommand_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEAT3D_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    save_checkpoint(get_backbone("resnet-10", num_classes=3), tmp_path / "tiny.pt")
    config = write(tmp_path / "w.toml", '[weights.add]\nname = "from-config"\nlink = true\n')
    result = run("weights", "add", str(tmp_path / "tiny.pt"), "--config", str(config))
    assert result.exit_code == 0, result.output
    entry = read_registry(tmp_path / "home")["from-config"]
    assert entry.linked and entry.classes == 3


def test_config_option_on_any_group(tmp_path: Path) -> None:
    @click.group()
    def root() -> None:
        """Root."""

    @root.command()
    @click.option("--size", type=int, default=1)
    @click.option("--name", default="x")
    def show(size: int, name: str) -> None:
        click.echo(f"{size} {name}")

    add_config_option(root)
    runner = CliRunner()
    config = write(tmp_path / "c.toml", 'size = 5\n[show]\nname = "y"\n')
    assert runner.invoke(root, ["show"]).output == "1 x\n"
    assert runner.invoke(root, ["show", "--config", str(config)]).output == "5 y\n"
    result = runner.invoke(root, ["show", "--config", str(config), "--size", "9"])
    assert result.output == "9 y\n"
