"""The planned DAG: job counts for the paper config, offline, without running anything.

Every plan is also checked for the runtime table (rule runtime_by_rule): every other job Snakemake
plans is upstream of it, so it runs last and the DAG above it, whose benchmark files it reads
(prefopt.reporting.run_jobs), is the whole run; and every planned job is needed by another or by
rule all.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import copy_workflow


@pytest.fixture(scope="module")
def work(module_tmp_path):
    """A copy of the workflow: dry runs must not see (or lock) the user's own results/."""
    return copy_workflow(module_tmp_path / "repo")


RUNTIME_RULE = "runtime_by_rule"


def planned_jobs(stdout: str) -> list[tuple[str, dict[str, list[str]]]]:
    """(rule, {input/output/log/benchmark: paths}) of every job a dry run prints."""
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", stdout, flags=re.M):
        fields = re.findall(r"^    (input|output|log|benchmark): (.*)$", body, flags=re.M)
        jobs.append((rule, {k: v.split(", ") for k, v in fields}))
    return jobs


def assert_runtime_table_comes_after_every_job(stdout: str) -> None:
    jobs = planned_jobs(stdout)
    runtime = [i for i, (rule, _) in enumerate(jobs) if rule == RUNTIME_RULE]
    assert len(runtime) == 1, f"{RUNTIME_RULE} planned {len(runtime)} times"
    producer = {f: i for i, (_, files) in enumerate(jobs) for f in files.get("output", [])}
    upstream, todo = set(), list(runtime)
    while todo:  # the jobs the runtime table's job depends on, directly or not
        for f in jobs[todo.pop()][1].get("input", []):
            if f in producer and producer[f] not in upstream:
                upstream.add(producer[f])
                todo.append(producer[f])
    others = {i for i, (rule, _) in enumerate(jobs) if rule not in (RUNTIME_RULE, "all")}
    left_out = sorted({jobs[i][0] for i in others - upstream})
    assert not left_out, f"jobs not upstream of the runtime table (not in its cost): {left_out}"
    # ...and every job is needed: its output is read by another job or by rule all
    read = {f for _, files in jobs for f in files.get("input", [])}
    extra = [
        (r, files["output"]) for r, files in jobs if r != "all" and not set(files["output"]) & read
    ]
    assert extra == [], f"jobs whose output nothing reads: {extra}"


def dry_run(work, *args: str, log: list | None = None) -> dict[str, int]:
    """Job counts per rule of the plan (and the runtime table checked to come after every job)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
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
    assert_runtime_table_comes_after_every_job(proc.stdout)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    return {k: int(v) for k, v in counts.items()}


def test_paper_config_plans_one_reference_cache_and_24_training_jobs(work):
    jobs = dry_run(work)
    assert jobs["cache_reference_logps"] == 1
    assert jobs["train_policy"] == 8 * 3  # Table 1's trained rows x 3 seeds
    assert jobs["prepare_model"] == 1
    assert jobs["generate_alpaca_eval"] == jobs["generate_mt_bench"] == 9 * 3
    assert jobs["judge_alpaca_eval_api"] == jobs["judge_mt_bench_api"] == 27
    assert jobs["download_preference_data"] == 2  # no mirror: pinned downloads (train, test)
    # the generation-free held-out signal: every Table 1 row x seed, one reference pass
    assert jobs["prepare_heldout_pairs"] == jobs["cache_heldout_reference_logps"] == 1
    assert jobs["heldout_preference"] == 9 * 3 and jobs["aggregate_heldout"] == 1


def test_ddp_training_jobs_ask_for_their_gpus(work):
    """training.gpus_per_job: 2 makes every train_policy job ask for 2 GPUs (the other GPU rules
    keep 1), granted only where the run allows 2: Snakemake caps a job at --resources gpu=N
    (profiles/workstation: 1), which the training job then refuses
    (prefopt.training.ddp.require_job_gpus). (Switching the key reruns nothing:
    tests/integration/test_e2e_tiny.py.)"""
    (work / "ddp.yaml").write_text("training: {gpus_per_job: 2}\n")

    def gpus(*args: str) -> dict[str, set[str]]:
        log: list[str] = []
        dry_run(work, *args, log=log)
        found: dict[str, set[str]] = {}
        for rule, body in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", log[0], flags=re.M):
            if m := re.search(r"^    resources: .*\bgpu=(\d+)", body, flags=re.M):
                found.setdefault(rule, set()).add(m.group(1))
        return found

    granted = gpus("--configfile", "ddp.yaml", "--resources", "gpu=2")
    assert granted["train_policy"] == {"2"}
    assert granted["generate_alpaca_eval"] == granted["cache_reference_logps"] == {"1"}
    capped = gpus("--configfile", "ddp.yaml", "--resources", "gpu=1")  # as profiles/workstation
    assert capped["train_policy"] == {"1"}


def planned_resources(work, *args: str) -> dict[str, dict[str, str]]:
    """{rule: its first job's resources} as Snakemake's dry run prints them."""
    log: list[str] = []
    dry_run(work, *args, log=log)
    found: dict[str, dict[str, str]] = {}
    for rule, body in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", log[0], flags=re.M):
        if m := re.search(r"^    resources: (.*)$", body, flags=re.M):
            found.setdefault(rule, dict(re.findall(r"(\w+)=([^,\s]+)", m[1])))
    return found


def test_gpu_jobs_ask_for_what_the_config_implies(work):
    """Issue 30: the rules state their needs (no profile here: --workflow-profile none), from
    the config: the paper's train_policy asks for its computed memory and run time, and a
    measured resources.seconds_per_step changes the run time it asks for."""
    from prefopt.config import load_config
    from prefopt.resources import RULE_NEEDS, rule_resources

    paper = load_config(work / "config/config.yaml")
    planned = planned_resources(work)
    for rule in ("train_policy", "cache_reference_logps", "generate_alpaca_eval"):
        want = rule_resources(paper, rule)
        got = planned[rule]
        assert (int(got["gpu"]), int(got["mem_mb"]), int(got["runtime"])) == (
            want["gpu"], want["mem_mb"], want["runtime"],
        ), rule  # fmt: skip
    assert {r for r in planned if r in RULE_NEEDS} == {r for r in planned if "gpu" in planned[r]}
    assert int(planned["train_policy"]["runtime"]) > 60  # 23,301 steps: hours, not the floor
    (work / "measured.yaml").write_text("resources: {seconds_per_step: 2.0}\n")
    slow = planned_resources(work, "--configfile", "measured.yaml")
    steps = 23_301  # prefopt.plan.steps_per_job of the paper config
    assert int(slow["train_policy"]["runtime"]) == -(-steps * 2.0 * 3 // 60)
    assert slow["generate_alpaca_eval"] == planned["generate_alpaca_eval"]


def test_embedded_config_reads_the_shipped_data(work):
    log: list[str] = []
    jobs = dry_run(work, "--configfile", "config/embedded.yaml", log=log)
    # lambda-DPO cannot run on the shipped data: the run says why instead of leaving it out
    assert "lambda-DPO (lambda_dpo) is not in this run" in log[0]
    assert "download_preference_data" not in jobs
    assert jobs["train_policy"] == 2 * 2  # dpo and apo_hinge_zero x 2 seeds
    assert jobs["judge_alpaca_eval_local"] == 3 * 2  # and the untrained base
    assert jobs["cache_reference_logps"] == 1
    assert jobs["heldout_preference"] == 3 * 2 and jobs["cache_heldout_reference_logps"] == 1
    assert jobs["render_heldout_preference"] == 1  # the separation from DPO, over seeds


def test_judge_calibration_is_planned_with_the_runs_alpaca_eval_judge(work):
    """The embedded run's local judge re-judges the retired judge's shipped pairs once and the
    calibration table is made; the paper config downloads the full files and asks its API judge
    (the paper's, pinned); no sources, no calibration."""
    log: list[str] = []
    jobs = dry_run(work, "--configfile", "config/embedded.yaml", log=log)
    assert jobs["prepare_calibration_pairs"] == jobs["judge_calibration_alpaca_eval_local"] == 1
    assert jobs["judge_calibration"] == 1
    assert "download_alpaca_eval_calibration" not in jobs
    assert "judge_calibration_alpaca_eval_api" not in jobs
    shipped = "workflow/resources/data/alpaca_eval_calibration/gemini-pro/alpaca_eval_gpt4_turbo_fn"
    assert f"{shipped}/annotations.json" in log[0]
    assert "results/tables/judge_calibration.md" in log[0]
    paper: list[str] = []
    jobs = dry_run(work, log=paper)
    assert (
        jobs["download_alpaca_eval_calibration"] == jobs["judge_calibration_alpaca_eval_api"] == 1
    )
    assert "results/judgments/calibration/alpaca_eval/alpaca_eval_gpt4_turbo_fn/" in paper[0]
    (work / "no_calibration.yaml").write_text("calibration: {alpaca_eval: {sources: []}}\n")
    jobs = dry_run(work, "--configfile", "config/embedded.yaml", "no_calibration.yaml")
    assert not [rule for rule in jobs if "calibration" in rule]


def test_a_run_without_held_out_pairs_renders_no_held_out_artifact(work):
    """lambda-DPO's prompts are not checked against the held-out pairs: a run of it alone scores
    none, and the held-out notebook (which would have no input) is not planned."""
    (work / "lambda_only.yaml").write_text("run: {variants: [lambda_dpo], seeds: [0]}\n")
    layers = ["config/embedded.yaml", "config/lambda-dpo-fixture.yaml"]
    jobs = dry_run(work, "--configfile", *layers, "lambda_only.yaml")
    assert jobs["train_lambda_dpo"] == 1 and "heldout_preference" not in jobs
    assert "render_heldout_preference" not in jobs and jobs["render_table1_alpaca_eval"] == 1


@pytest.mark.parametrize("judge_rule", ["judge_alpaca_eval_local", "judge_mt_bench_local"])
def test_every_stage_has_exactly_one_producer(work, judge_rule):
    jobs = dry_run(work, "--configfile", "tests/config.tiny.yaml")
    assert jobs[judge_rule] == 2
    assert jobs["aggregate_scores"] == 1
    assert all(k.startswith("render_") for k in jobs if "render" in k)


def test_seed_methods_overlay_plans_each_branch_once_per_seed(work):
    jobs = dry_run(work, "--configfile", "config/config.yaml", "config/seed-methods.yaml")
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
        "config/embedded.yaml",
        "config/embedded-seed-methods.yaml",
    )
    assert "prepare_teacher_model" not in jobs
    assert jobs["train_policy"] == 1  # the DPO teacher, seed 0
    assert jobs["train_dckd_student"] == 1 and jobs["train_adpa_student"] == 2


def test_runtime_table_includes_the_teachers_and_starting_points_a_run_trains(work):
    """ADPA+ alone still trains its DCKD starting point and the DPO teacher of both; lambda-DPO
    reads its local listwise file (no download). dry_run checks the runtime table comes after
    them all."""
    (work / "overlay.yaml").write_text("run: {variants: [base, adpa_plus, lambda_dpo]}\n")
    configs = ["tests/config.tiny.yaml", "tests/config.seed_methods.tiny.yaml", "overlay.yaml"]
    jobs = dry_run(work, "--configfile", *configs)
    assert jobs["train_policy"] == jobs["train_dckd_student"] == jobs["train_adpa_student"] == 1
    assert jobs["train_lambda_dpo"] == 1 and "download_listwise_data" not in jobs
    assert jobs[RUNTIME_RULE] == 1
