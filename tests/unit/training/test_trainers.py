"""Both trainers' diagnostics.csv on the real SmolLM2 (one writer, prefopt.training.diagnostics): a
row per logging step and one for the steps after the last logging step, so a run shorter than
``logging_steps`` still logs its last optimiser step; with ``logging_steps=1``, no duplicate."""

from __future__ import annotations

import csv

import pytest

from prefopt.data.prepare import write_jsonl
from prefopt.training.diagnostics import DIAGNOSTIC_COLUMNS

PAIRS = [
    {"pair_id": "p0", "prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
    {"pair_id": "p1", "prompt": "Greet me in French.", "chosen": "Bonjour!", "rejected": "Hola."},
]
# batch size 1: two optimiser steps in one epoch
TRAINING = {
    "max_length": 48,
    "max_prompt_length": 24,
    "reference_batch_size": 2,
    "epochs": 1,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-6,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.0,
    "gradient_checkpointing": False,
    "precision": "fp32",
    "threads": 2,
}
N_STEPS = len(PAIRS)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    write_jsonl(PAIRS, path)
    return path


@pytest.fixture(scope="module")
def reference(smollm2_dir, pairs):
    from prefopt.training.trainer import compute_reference_logps

    path = pairs.with_name("reference.jsonl")
    compute_reference_logps(smollm2_dir, pairs, path, TRAINING)
    return path


@pytest.fixture(scope="module")
def teacher_topk(smollm2_dir, pairs):
    from prefopt.training.seed_methods.trainer import cache_teacher_topk

    path = pairs.with_name("topk.pt")
    cache_teacher_topk(smollm2_dir, pairs, path, TRAINING, k=4)
    return path


def _read(path):
    with open(path, newline="") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


def _check_rows(rows, summary, logging_steps):
    """A row at every logged step and at the last step, each step once, every pair counted."""
    steps = [int(r[0]) for r in rows]
    logged = [h["step"] for h in summary["log_history"] if "loss" in h]
    assert summary["global_steps"] == N_STEPS
    assert logged == list(range(logging_steps, N_STEPS + 1, logging_steps))
    assert steps == sorted({*logged, N_STEPS})
    assert float(rows[-1][1]) == 1.0  # epoch of the last optimiser step
    assert sum(int(r[2]) for r in rows) == len(PAIRS)  # n_pairs: no step dropped


@pytest.mark.parametrize("logging_steps", [N_STEPS + 3, 1])
def test_pairwise_diagnostics_cover_every_step(
    smollm2_dir, pairs, reference, tmp_path, logging_steps
):
    from prefopt.training.trainer import train_policy

    diagnostics = tmp_path / "diagnostics.csv"
    summary = train_policy(
        smollm2_dir,
        pairs,
        reference,
        tmp_path / "model",
        diagnostics,
        {**TRAINING, "logging_steps": logging_steps},
        loss_name="apo_hinge_zero",
        loss_params={"beta": 0.1, "margin": 1.0},
        seed=0,
    )
    header, rows = _read(diagnostics)
    assert header == DIAGNOSTIC_COLUMNS
    _check_rows(rows, summary, logging_steps)


@pytest.mark.parametrize("logging_steps", [N_STEPS + 3, 1])
def test_seed_method_diagnostics_cover_every_step(
    smollm2_dir, pairs, teacher_topk, tmp_path, logging_steps
):
    from prefopt.training.seed_methods.trainer import train_seed_method

    diagnostics = tmp_path / "diagnostics.csv"
    params = {"distill_weight": 1.0, "chosen_weight": 1.0, "rejected_weight": 1.0, "sft_weight": 0}
    summary = train_seed_method(
        smollm2_dir,
        {"pairs": pairs, "cache": teacher_topk},
        tmp_path / "model",
        diagnostics,
        {**TRAINING, "logging_steps": logging_steps},
        method="dckd",
        params=params,
        seed=0,
    )
    header, rows = _read(diagnostics)
    assert header == ["step", "epoch", "n_pairs", "loss", "distill_loss", "sft_nll_chosen"]
    _check_rows(rows, summary, logging_steps)
