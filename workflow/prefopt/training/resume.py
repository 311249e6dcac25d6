"""Checkpoint and resume of a training job, so a kill costs at most `checkpoint_minutes` of work (or
`checkpoint_steps` steps).

A paper-scale training job runs for hours: a time limit, a pre-emption or a dead node must not
send it back to step 0. With `training.checkpoint_minutes: M` the trainer saves a checkpoint at
the first logging step after every M minutes of wall time (`WallClockSave`), with
`training.checkpoint_steps: N` every N optimiser steps (0 and 0 = off), into
``<job>/checkpoints/checkpoint-<step>/``, beside the job's declared outputs so Snakemake does not
delete it when the job fails. A checkpoint is transformers' own (weights, optimizer, scheduler,
RNG states, trainer state with the log history) plus what our trainers add: the diagnostics CSV so
far, the trainer's own state (the seed methods' lambda generator), the running loss total and the
step-0 reference check, and last a marker file that says the checkpoint is complete. A rerun of
the same job (same fingerprint: settings and the sha256 of every input file) resumes from its
newest complete checkpoint; checkpoints of another job, or without the marker, are deleted. The
folder is deleted once the job's outputs are written. tests/unit/training/test_resume.py kills a
run with SIGKILL mid-step and checks that the resumed run ends with the uninterrupted run's
weights.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from prefopt.config import RESOURCE_KEYS
from prefopt.reporting.provenance import file_hashes
from prefopt.training.ddp import barrier, is_main_process

#: Written last into a checkpoint: without it the checkpoint is incomplete and never resumed.
MARKER = "prefopt_checkpoint.json"
#: What the checkpoints in a folder belong to (`job_fingerprint`).
FINGERPRINT = "fingerprint.json"
#: The trainer's own state (`resume_state()` / `load_resume_state()`), when it has any.
TRAINER_STATE = "prefopt_trainer_state.pt"
#: The job's diagnostics CSV as it was at the checkpoint's step.
DIAGNOSTICS = "diagnostics.csv"
#: training keys that change neither the results nor the checkpoints' meaning.
_NOT_FINGERPRINTED = {key for section, key in RESOURCE_KEYS if section == "training"}


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def job_fingerprint(
    inputs: Iterable[str | Path], training: Mapping[str, Any], **settings: Any
) -> dict[str, Any]:
    """What a job's checkpoints depend on: its training settings (thread count and checkpoint
    interval left out), its own settings (loss, parameters, seed) and the sha256 of every input
    file (every file of an input folder). Equal fingerprints: a checkpoint may be resumed."""
    kept = {k: v for k, v in training.items() if k not in _NOT_FINGERPRINTED}
    record = {"training": kept, **settings, "inputs": file_hashes(inputs)}
    return json.loads(json.dumps(record, default=str))


class Checkpoints:
    """The checkpoint folder of one training job (`work_dir`, the trainer's `output_dir`).

    `latest` is the newest complete checkpoint of this job, or None; constructing the object
    deletes everything else in the folder (another job's checkpoints, incomplete ones). In a
    DDP job (`prefopt.training.ddp`) rank 0 does that, before the other processes only read.
    """

    def __init__(
        self,
        work_dir: str | Path,
        fingerprint: dict[str, Any],
        diagnostics_path: str | Path | None = None,
        every_minutes: float = 0.0,
    ) -> None:
        self.dir = Path(work_dir)
        #: also save at the first logging step after this much wall time (0: by steps only)
        self.every_minutes = float(every_minutes)
        self.diagnostics_path = Path(diagnostics_path) if diagnostics_path else None
        stamp = self.dir / FINGERPRINT
        main = is_main_process()
        if main and stamp.is_file() and json.loads(stamp.read_text()) != fingerprint:
            shutil.rmtree(self.dir)  # another job's (other data, settings or seed)
        if main:
            self.dir.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True))
        complete = []
        for path in self.dir.glob("checkpoint-*"):
            if (path / MARKER).is_file():
                complete.append(path)
            elif main:
                shutil.rmtree(path)  # killed while saving
        self.latest = max(complete, key=checkpoint_step) if complete else None
        #: The latest checkpoint's marker (step, running loss total, carried records), read now:
        #: the resumed run's first checkpoint deletes that folder.
        self.marker = json.loads((self.latest / MARKER).read_text()) if self.latest else {}

    def attach(self, trainer: Any, carry: Mapping[str, Any]) -> None:
        """Complete every checkpoint the trainer saves (`carry` goes into its marker); when
        resuming, put back the diagnostics CSV and the trainer's own state first."""
        trainer.add_callback(_CompleteCheckpoint(trainer, self.diagnostics_path, dict(carry)))
        if self.every_minutes > 0:
            trainer.add_callback(WallClockSave(self.every_minutes))
        if self.latest is None:
            return
        if self.diagnostics_path is not None:
            writer = _diagnostics_writer(trainer)
            saved = self.latest / DIAGNOSTICS
            if writer is not None and saved.is_file():
                writer.continue_from(saved)
        state = self.latest / TRAINER_STATE
        if state.is_file() and hasattr(trainer, "load_resume_state"):
            trainer.load_resume_state(torch.load(state, weights_only=False))

    def train_loss(self, result_loss: float, global_step: int) -> float:
        """The mean loss over every step of the job, resumed or not (transformers averages
        only the steps run by the last `train()` call)."""
        if self.latest is None:
            return result_loss
        start = int(self.marker["step"])
        total = float(self.marker["total_loss"]) + result_loss * (global_step - start)
        return total / max(global_step, 1)

    def clear(self) -> None:
        """The job's outputs are written: its checkpoints are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _diagnostics_writer(trainer: Any) -> Any:
    from prefopt.training.diagnostics import DiagnosticsWriter

    found = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, DiagnosticsWriter)]
    return found[0] if found else None


class WallClockSave(TrainerCallback):
    """Save a checkpoint at the first logging step once `minutes` of wall time have passed
    since the job started or last saved (`training.checkpoint_minutes`): a kill costs at most
    that much work, whatever a step costs on the machine at hand. Only on logging steps, where
    the diagnostics and the loss total are complete. In a DDP job rank 0's clock decides for
    every process (a checkpoint is a collective save)."""

    def __init__(self, minutes: float, clock: Any = time.monotonic) -> None:
        self.seconds = 60.0 * minutes
        self.clock = clock
        self.since = clock()

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.since = self.clock()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step % max(int(args.logging_steps), 1):
            return
        due = [self.clock() - self.since >= self.seconds]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast_object_list(due, src=0)
        if due[0]:
            control.should_save = True

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        self.since = self.clock()


class _CompleteCheckpoint(TrainerCallback):
    """After transformers has saved ``checkpoint-<step>``: add our state, then the marker, then
    delete the older checkpoints (at most one complete checkpoint on disk after each save)."""

    def __init__(self, trainer: Any, diagnostics_path: Path | None, carry: dict) -> None:
        self.trainer = trainer
        self.diagnostics_path = diagnostics_path
        self.carry = carry

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        barrier()  # a DDP job: every process has saved its part (its RNG state)
        if not is_main_process():
            return
        if self.diagnostics_path is not None and self.diagnostics_path.is_file():
            shutil.copyfile(self.diagnostics_path, folder / DIAGNOSTICS)
        if hasattr(self.trainer, "resume_state"):
            torch.save(self.trainer.resume_state(), folder / TRAINER_STATE)
        marker = {
            "step": state.global_step,
            # every logged loss so far: checkpoint_steps is a multiple of logging_steps
            "total_loss": float(self.trainer._total_loss_scalar),
            **self.carry,
        }
        tmp = folder / f"{MARKER}.tmp"
        tmp.write_text(json.dumps(marker, indent=1))
        os.replace(tmp, folder / MARKER)
        for other in folder.parent.glob("checkpoint-*"):
            if other != folder:
                shutil.rmtree(other, ignore_errors=True)
