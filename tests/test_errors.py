"""One error base: every error feat3d raises on purpose is a Feat3dError with an exit status."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from feat3d.backbones import WeightsError
from feat3d.cli import cli
from feat3d.errors import Feat3dError, RunError, UsageError
from feat3d.flow.compute import FlowError
from feat3d.info import InfoError
from feat3d.io.decode import VideoDecodeError
from feat3d.io.discover import InputError
from feat3d.io.h5store import OutputError
from feat3d.io.journal import JournalError
from feat3d.plots import PlotError
from feat3d.train.datasets import DatasetError
from feat3d.train.fit import TrainError
from feat3d.train.svm import SvmError


@pytest.mark.parametrize(
    "error",
    [WeightsError, FlowError, InfoError, VideoDecodeError, OutputError, JournalError, PlotError,
     DatasetError, TrainError, SvmError],
)  # fmt: skip
def test_run_errors_exit_1(error: type[Exception]) -> None:
    assert issubclass(error, RunError) and issubclass(error, Feat3dError)
    assert error("x").exit_code == 1


def test_usage_errors_exit_2() -> None:
    assert issubclass(InputError, UsageError)
    assert InputError("x").exit_code == 2


def test_cli_maps_each_kind_to_its_exit_status(tmp_path) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        cli, ["extract", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.h5"), "-w", "none"]
    )
    assert missing.exit_code == 2 and "nope.mp4" in missing.output
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = runner.invoke(cli, ["info", str(broken)])
    assert result.exit_code == 1 and "broken.pt" in result.output
    assert "Traceback" not in result.output
