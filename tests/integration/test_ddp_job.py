"""A DDP training job through Snakemake (training.gpus_per_job: 2, prefopt.training.ddp): the rule
asks for two GPUs, its script launches two torchrun processes (CPU processes with gloo here, under
allow_cpu), they train with the configured global batch, and the job's one log holds both the
processes' lines and the script's own, in order. tests/unit/training/test_ddp.py checks that the
processes train as one process does."""

from __future__ import annotations

import json
import os

import pytest
from helpers import copy_workflow, run_snakemake, snakemake_env

pytestmark = pytest.mark.e2e

JOB = "results/train/apo_hinge_zero/seed0"


def test_train_policy_with_two_processes(tmp_path):
    work = copy_workflow(tmp_path / "repo")
    (work / "ddp.yaml").write_text("training: {gpus_per_job: 2}\n")
    run = run_snakemake(
        work, f"{JOB}/model", "--cores", "2", "--resources", "gpu=2",
        "--configfile", "tests/config.tiny.yaml", "ddp.yaml",
        env=snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath), timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads((work / JOB / "model" / "prefopt_training.json").read_text())
    # tests/config.tiny.yaml: 8 pairs, batch 4, 1 epoch -> 2 steps of 4 pairs, 2 per process
    assert summary["processes"] == 2
    assert summary["global_batch_size"] == 4 and summary["global_steps"] == 2
    rows = (work / JOB / "diagnostics.csv").read_text().splitlines()
    assert [r.split(",")[2] for r in rows[1:]] == ["4", "4"]  # n_pairs: both processes' pairs
    log = (work / "results" / "logs" / "train_policy" / "apo_hinge_zero" / "seed0.log").read_text()
    ddp_line, trained_line = log.find("DDP: 2 processes (gloo)"), log.find("trained apo_hinge_zero")
    assert 0 <= ddp_line < trained_line, log[-3000:]
    assert not (work / JOB / "ddp_args.json").exists()
    assert not (work / JOB / "checkpoints").exists()
