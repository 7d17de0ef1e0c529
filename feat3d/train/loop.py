"""The one training loop of feat3d: epochs of accumulated optimizer steps, commits and resume.

``feat3d train`` (:func:`feat3d.train.fit`) and the two-stream stages
(:func:`feat3d.train.two_stream.train_stage`) both run a :class:`TrainLoop`. What differs
between them comes in as :class:`LoopHooks`: the batch → loss step, the data passes an epoch
makes, what happens when an epoch begins (train mode, a learning-rate table) and when it ends
(validation, the plateau schedule, checkpoints). Also here: the committed state a run resumes
from, the plateau schedule, the check that an epoch holds enough optimizer steps, and the
linear learning-rate scaling rule.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

#: An epoch with fewer optimizer steps than this is warned about: the weights barely move
#: per epoch, and the rate schedule (which steps once per epoch) outpaces the learning.
MIN_STEPS_PER_EPOCH = 4
#: The batch a base learning rate is meant for under the linear scaling rule (Hara et al.'s
#: 32 × 8, Goyal et al. 2017's reference batch).
REFERENCE_BATCH = 256


class SizedBatches(Protocol):
    """One pass over the data: an iterable of batches that knows how many it holds."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Any: ...


@dataclass
class StepOutput:
    """What the step hook returns for one batch.

    Attributes:
        loss: Mean loss of the batch (it is back-propagated divided by ``accumulate``).
        labels: The batch's labels (their count weighs the loss in the epoch's mean).
        logits: Scores whose argmax is compared with ``labels`` (the clip accuracy);
            ``None``: no accuracy is counted.
    """

    loss: torch.Tensor
    labels: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class EpochTotals:
    """Sums over the batches of one epoch (additive, so distributed ranks can sum them).

    Attributes:
        loss_sum: Sum of batch loss × batch size.
        correct: Clips whose argmax is their label.
        seen: Clips trained on.
        steps: Optimizer steps taken.
    """

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    steps: int = 0

    def add(self, out: StepOutput) -> None:
        self.loss_sum += float(out.loss.detach()) * len(out.labels)
        if out.logits is not None:
            self.correct += float((out.logits.detach().argmax(1) == out.labels).sum())
        self.seen += len(out.labels)


def _nothing(epoch: int) -> None:
    del epoch


def _no_stop(epoch: int, totals: EpochTotals) -> str:
    del epoch, totals
    return ""


@dataclass
class LoopHooks:
    """The parts of a training run that differ between its callers.

    Attributes:
        step: Batch → :class:`StepOutput` (the forward pass and its loss, run under the
            loop's autocast); ``None`` skips the batch (e.g. every clip of it failed).
        passes: Epoch → its passes over the data, each a sized iterable of batches;
            gradients never carry from one pass into the next.
        begin_epoch: Called before an epoch's first pass (train mode, a scheduled rate).
        end_epoch: Called with the epoch and its totals after its last pass (validation,
            schedule, commit); returns why training stops, or ``""`` to go on.
        on_batch: Called with (batches done, batches in the pass) after every batch.
        on_step: Called with (optimizer steps so far, loss of the step's last batch) after
            every optimizer step; it may raise to abort the run.
    """

    step: Callable[[Any], StepOutput | None]
    passes: Callable[[int], Iterable[SizedBatches]]
    begin_epoch: Callable[[int], None] = _nothing
    end_epoch: Callable[[int, EpochTotals], str] = _no_stop
    on_batch: Callable[[int, int], None] | None = None
    on_step: Callable[[int, float], None] | None = None


class TrainLoop:
    """Epochs of optimizer steps, each accumulated over ``accumulate`` batches.

    Args:
        model: The trained network (not a DDP wrapper): its state is what is committed.
        optimizer: Steps the trainable parameters.
        accumulate: Batches per optimizer step.
        partial_step: Also step on the last, incomplete group of batches of a pass
            (``feat3d train``); otherwise its gradients are dropped (the two-stream stages
            step on whole groups only).
        scaler: Loss scaler (fp16 training); default: a disabled one.
        autocast: Context every step hook runs in; default: none.
        max_steps: Stop after this many optimizer steps (counted over resumes too).

    Attributes:
        steps: Optimizer steps taken so far.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        accumulate: int = 1,
        partial_step: bool = True,
        scaler: torch.amp.GradScaler | None = None,
        autocast: contextlib.AbstractContextManager[object] | None = None,
        max_steps: int | None = None,
    ) -> None:
        if accumulate < 1:
            raise ValueError(f"accumulate must be at least 1, not {accumulate}")
        self.model = model
        self.optimizer = optimizer
        self.accumulate = accumulate
        self.partial_step = partial_step
        self.scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
        self.autocast = autocast or contextlib.nullcontext()
        self.max_steps = max_steps
        self.steps = 0

    def run(self, epochs: Iterable[int], hooks: LoopHooks) -> str:
        """Train through ``epochs``.

        Returns:
            Why training stopped early (an ``end_epoch`` reason, or the step limit), or
            ``""`` when every epoch ran.
        """
        for epoch in epochs:
            hooks.begin_epoch(epoch)
            totals = EpochTotals()
            for batches in hooks.passes(epoch):
                if self._run_pass(batches, hooks, totals):
                    return f"reached {self.max_steps} step(s)"
            stop = hooks.end_epoch(epoch, totals)
            if stop:
                return stop
        return ""

    def _run_pass(self, batches: SizedBatches, hooks: LoopHooks, totals: EpochTotals) -> bool:
        """One pass over ``batches``; returns whether the step limit was reached."""
        n_batches = len(batches)
        self.optimizer.zero_grad(set_to_none=True)
        for index, batch in enumerate(batches, 1):
            with self.autocast:
                out = hooks.step(batch)
            if out is None:
                continue
            scaled = out.loss / self.accumulate
            self.scaler.scale(scaled).backward()
            stepped = index % self.accumulate == 0 or (self.partial_step and index == n_batches)
            if stepped:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.steps += 1
                totals.steps += 1
            totals.add(out)
            if hooks.on_batch is not None:
                hooks.on_batch(index, n_batches)
            if stepped and hooks.on_step is not None:
                hooks.on_step(self.steps, float(scaled.detach()) * self.accumulate)
            if stepped and self.max_steps is not None and self.steps >= self.max_steps:
                return True
        return False

    @property
    def lr(self) -> float:
        """The rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        """Set every parameter group's rate (a scheduled rate)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state(self, epoch: int, **extra: Any) -> dict[str, Any]:
        """What a resume needs after ``epoch``: weights, optimizer, scaler, random state,
        plus the caller's ``extra`` entries."""
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            **extra,
        }

    def commit(self, path: Path, epoch: int, **extra: Any) -> None:
        """Atomically replace ``path`` with :meth:`state`: the one commit point of a run."""
        atomic_save(self.state(epoch, **extra), path)

    def restore(self, path: Path) -> dict[str, Any]:
        """Load the state committed in ``path`` (weights, optimizer, scaler, random state).

        Returns:
            The whole committed dictionary, for the caller's own entries.
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        return state


class PlateauSchedule:
    """Divide the rate by 10 after ``patience`` validations without a lower loss; after
    ``max_drops`` divisions, the next plateau stops training."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, patience: int, max_drops: int):
        self.optimizer = optimizer
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.1, patience=patience
        )
        self.max_drops = max_drops
        self.drops = 0

    def step(self, loss: float) -> str:
        """Account for one validation loss; returns why training stops, or ``""``."""
        before = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step(loss)
        if self.optimizer.param_groups[0]["lr"] < before:
            self.drops += 1
            if self.drops > self.max_drops:
                return f"validation loss plateaued after {self.max_drops} rate drops"
        return ""


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: ``path`` is always whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def scaled_lr(lr: float, batch_size: int, accumulate: int, world: int = 1) -> float:
    """The linear scaling rule: ``lr × (batch_size × accumulate × world) / 256``."""
    return lr * (batch_size * accumulate * world) / REFERENCE_BATCH


def steps_per_epoch(
    n_clips: int, batch_size: int, accumulate: int, *, passes: int = 1, whole: bool = False
) -> float:
    """Optimizer steps an epoch of ``n_clips`` clips makes; with ``whole=False`` a last,
    incomplete group of batches counts as the fraction of a step its gradient is."""
    n_batches = math.ceil(n_clips / batch_size)
    per_pass = n_batches // accumulate if whole else n_batches / accumulate
    return passes * per_pass


def warn_few_steps(
    n_clips: int, batch_size: int, accumulate: int, *, passes: int = 1, whole: bool = False
) -> float:
    """Warn when an epoch holds fewer than :data:`MIN_STEPS_PER_EPOCH` optimizer steps,
    naming the largest ``--accumulate`` (or ``--batch-size``) that gives enough.

    Returns:
        The optimizer steps per epoch.
    """

    def steps(batch: int, acc: int) -> float:
        return steps_per_epoch(n_clips, batch, acc, passes=passes, whole=whole)

    now = steps(batch_size, accumulate)
    if now >= MIN_STEPS_PER_EPOCH:
        return now
    fewer = [k for k in range(accumulate - 1, 0, -1) if steps(batch_size, k) >= MIN_STEPS_PER_EPOCH]
    smaller = [b for b in range(batch_size - 1, 0, -1) if steps(b, 1) >= MIN_STEPS_PER_EPOCH]
    if fewer:
        advice = f"use --accumulate {fewer[0]}" + (" or less" if fewer[0] > 1 else "")
    elif smaller:
        advice = (
            f"use --batch-size {smaller[0]}"
            + (" or less" if smaller[0] > 1 else "")
            + (" with --accumulate 1" if accumulate > 1 else "")
        )
    else:
        advice = "use more training videos"
    epoch = f"{passes} passes over {n_clips}" if passes > 1 else f"{n_clips}"
    warnings.warn(
        f"an epoch of {epoch} training clip(s) in batches of {batch_size} makes {now:.3g} "
        f"optimizer step(s) with --accumulate {accumulate}, fewer than {MIN_STEPS_PER_EPOCH}: "
        f"the weights barely move per epoch; {advice}",
        stacklevel=2,
    )
    return now
