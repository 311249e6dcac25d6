"""The planned DAG: job counts for the paper config, offline, without running anything."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import copy_workflow


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A copy of the workflow: dry runs must not see (or lock) the user's own results/."""
    return copy_workflow(tmp_path_factory.mktemp("dag") / "repo")


def dry_run(work, *args: str, log: list | None = None) -> dict[str, int]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--quiet",
            "rules",
            "--workflow-profile",
            "none",
            *args,
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if log is not None:
        log.append(proc.stdout + proc.stderr)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    return {k: int(v) for k, v in counts.items()}


def test_paper_config_plans_one_reference_cache_and_24_training_jobs(work):
    jobs = dry_run(work)
    assert jobs["cache_reference_logps"] == 1
    assert jobs["train_policy"] == 8 * 3  # Table 1's trained rows x 3 seeds
    assert jobs["prepare_model"] == 1
    assert jobs["generate_alpaca_eval"] == jobs["generate_mt_bench"] == 9 * 3
    assert jobs["judge_alpaca_eval_api"] == jobs["judge_mt_bench_api"] == 27
    assert jobs["download_preference_data"] == 1  # no mirror: pinned downloads


def test_embedded_config_reads_the_shipped_data(work):
    log: list[str] = []
    jobs = dry_run(work, "--configfile", "workflow/configs/embedded.yaml", log=log)
    # lambda-DPO cannot run on the shipped data: the run says why instead of leaving it out
    assert "lambda-DPO (lambda_dpo) is not in this run" in log[0]
    assert "download_preference_data" not in jobs
    assert jobs["train_policy"] == 4 * 2
    assert jobs["judge_alpaca_eval_local"] == 5 * 2
    assert jobs["cache_reference_logps"] == 1


@pytest.mark.parametrize("judge_rule", ["judge_alpaca_eval_local", "judge_mt_bench_local"])
def test_every_stage_has_exactly_one_producer(work, judge_rule):
    jobs = dry_run(work, "--configfile", "tests/config.tiny.yaml")
    assert jobs[judge_rule] == 2
    assert jobs["aggregate_scores"] == 1
    assert all(k.startswith("render_") for k in jobs if "render" in k)


def test_seed_methods_overlay_plans_each_branch_once_per_seed(work):
    jobs = dry_run(work, "--configfile", "config.yaml", "workflow/configs/seed-methods.yaml")
    assert jobs["download_listwise_data"] == 1 and jobs["prepare_listwise_data"] == 1
    assert jobs["cache_listwise_reference_logps"] == 1
    assert jobs["train_lambda_dpo"] == 3
    assert jobs["cache_teacher_topk"] == jobs["train_dckd_student"] == 3
    # ADPA and ADPA+ each sample their own student and cache their own advantages
    assert jobs["generate_student_responses"] == jobs["cache_teacher_advantage"] == 6
    assert jobs["train_adpa_student"] == 6
    # the paper config's teachers are external (Qwen2.5-1.5B-Instruct and its base), fetched once
    assert jobs["prepare_teacher_model"] == 2
    assert jobs["train_policy"] == 8 * 3
    assert jobs["generate_alpaca_eval"] == 13 * 3


def test_embedded_seed_methods_distil_from_our_dpo_checkpoint(work):
    jobs = dry_run(
        work,
        "--configfile",
        "workflow/configs/embedded.yaml",
        "workflow/configs/embedded-seed-methods.yaml",
    )
    assert "prepare_teacher_model" not in jobs
    assert jobs["train_policy"] == 1  # the DPO teacher, seed 0
    assert jobs["train_dckd_student"] == 1 and jobs["train_adpa_student"] == 2
