"""prefopt.plan: a run's training steps, GPU time, disk and API cost, by hand (issue 29: a plan
before the first job)."""

from __future__ import annotations

import copy
import subprocess

import pytest

from prefopt.config import load_config
from prefopt.judging.preflight import configured_api_judges
from prefopt.plan import (
    ASSUMED_FLOPS,
    MODEL_PARAMETERS,
    estimated_seconds_per_step,
    plan_lines,
    steps_per_job,
)

QWEN = MODEL_PARAMETERS["Qwen/Qwen2.5-0.5B-Instruct"]


@pytest.fixture(scope="module")
def paper(repo):
    return load_config(repo / "config/config.yaml")


def test_paper_steps_estimate_and_disk_by_hand(paper):
    assert steps_per_job(paper) == 7767 * 3  # ceil(62,135 / 8) batches x 3 epochs
    assert estimated_seconds_per_step(paper) == pytest.approx(
        8 * QWEN * 8 * 2 * 1024 / ASSUMED_FLOPS
    )
    text = "\n".join(plan_lines(paper, {"train_policy": 24, "generate_alpaca_eval": 27}))
    assert "24 job(s) x 23,301 optimiser steps" in text
    assert "ESTIMATE for an H100-class GPU, not measured" in text and "300 TFLOP/s" in text
    hours = 24 * 23301 * estimated_seconds_per_step(paper) / 3600
    assert f"{hours:,.1f} GPU-hours" in text
    assert f"trained models {24 * 4 * QWEN / 1e9:,.1f} GB" in text
    assert f"{12 * QWEN / 1e9:,.1f} GB of checkpoint per training job" in text
    assert "API judges: none in the planned jobs" in text


def test_a_measured_step_time_replaces_the_estimate(paper):
    text = "\n".join(plan_lines(paper, {"train_policy": 24}, seconds_per_step=0.25))
    assert f"{24 * 23301 * 0.25 / 3600:,.1f} GPU-hours (0.250 s/step; measured" in text
    assert "ESTIMATE" not in text


def test_capped_pairs_fractional_epochs_and_an_unknown_model(paper):
    cfg = copy.deepcopy(paper)
    cfg["data"]["train"]["max_pairs"] = 100
    cfg["training"].update(epochs=1.5, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    assert steps_per_job(cfg) == 20  # ceil(ceil(100 / 8) x 1.5) = ceil(13 x 1.5)
    cfg["model"]["id"] = "someone/unknown-model"
    text = "\n".join(plan_lines(cfg, {"train_policy": 2}))
    assert "2 job(s) x 20 optimiser steps (100 pairs from data.train.max_pairs" in text
    assert "the model's size is not known here" in text and "disk" not in text


def test_api_judges_carry_their_requests_and_dollars(paper):
    text = "\n".join(
        plan_lines(paper, {"judge_alpaca_eval_api": 27}, api_judges=configured_api_judges(paper))
    )
    assert "API judge 'alpaca_eval_gpt4_turbo_fn' (alpaca_eval): ~$" in text
    assert "API judge 'gpt-4-0613' (mt_bench): ~$" in text


def test_the_plan_command_plans_the_embedded_run(repo):
    run = subprocess.run(
        ["bash", str(repo / "workflow/bin/plan"), "--configfile", "config/embedded.yaml",
         "--seconds-per-step", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train_policy 4" in run.stdout and "judge_alpaca_eval_local 6" in run.stdout
    assert "4 job(s) x 16 optimiser steps (32 pairs from data.train.max_pairs" in run.stdout
    assert f"{4 * 16 * 2 / 60:.1f} minutes (2.000 s/step; measured" in run.stdout
    assert "software stacks:" in run.stdout
