"""``feat3d train --model st-resnet-50 --stage ...``: one stage of the two-stream recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..model import select_device
from ..run.pipeline import resolve_workers
from ..train import DatasetSplit
from ..train.two_stream import run_stage

# Options a stage takes from the command line only when they were given: the stages have
# defaults of their own (a single forward pass per step, the paper's batch size).
_STAGE_DEFAULTS = {"epochs": None, "batch_size": None, "accumulate": 1}


def explicit_values() -> dict[str, Any]:
    """The options of this command that the user gave (command line or --config)."""
    ctx = click.get_current_context()
    return {
        name: value
        for name, value in ctx.params.items()
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    }


def train_stage(
    split: DatasetSplit, output: Path, *, stage: str | None, flow: Path | None,
    init_2d: Path | None, max_steps: int | None, seed: int, quiet: bool, resume: bool,
    explicit: dict[str, Any], **recipe: Any,
) -> None:  # fmt: skip
    """Run one stage into ``output`` (:func:`feat3d.train.two_stream.run_stage`) and print
    its losses."""
    if stage is None or flow is None:
        raise click.UsageError("st-resnet-50 trains in stages: give --stage and --flow FLOW.h5")
    if not quiet:
        click.echo(
            f"stage {stage}: {len(split.classes)} classes, {len(split.train)} training videos, "
            f"flow from {flow} → {output}",
            err=True,
        )

    def on_step(step: int, loss: float) -> None:
        if not quiet:
            click.echo(f"step {step}: loss {loss:.4f}", err=True)

    given = {name: explicit.get(name, default) for name, default in _STAGE_DEFAULTS.items()}
    if "crop" in explicit:
        given["crop"] = explicit["crop"]
    device = select_device(recipe["device"])
    report, checkpoint = run_stage(
        split, output, stage=stage, flow_path=flow, init_2d=init_2d,
        pretrained=recipe["pretrained"], num_workers=resolve_workers(recipe["workers"], device),
        device=device, on_step=on_step, max_steps=max_steps, seed=seed, resume=resume,
        frame_rate=recipe["frame_rate"], **given,
    )  # fmt: skip
    last = report.losses[-1] if report.losses else float("nan")
    click.echo(f"stage {stage}: {report.steps} step(s), last loss {last:.4f} → {checkpoint}",
               err=True)  # fmt: skip
