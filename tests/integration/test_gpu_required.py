"""No silent CPU fallback: with `allow_cpu: false` (the paper's config) a GPU rule on a machine
whose torch sees no GPU stops at once, saying how to expose one; nothing is written."""

from __future__ import annotations

import os
import re
import time

import pytest
from helpers import copy_workflow, run_snakemake, snakemake_env

pytestmark = pytest.mark.e2e

CACHE = "results/reference_logps/smollm2-135m-instruct/ultrafeedback_binarized-maxlen96.jsonl"


def test_gpu_rule_fails_fast_naming_nv_without_allow_cpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the rule would run on it")
    work = copy_workflow(tmp_path / "repo")
    (work / "paper_numerics.yaml").write_text("allow_cpu: false\ntraining: {precision: fp16}\n")
    run = run_snakemake(
        work, CACHE, "--cores", "2",
        "--configfile", "tests/config.tiny.yaml", "paper_numerics.yaml",
        env=snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath), timeout=900,
    )  # fmt: skip
    assert run.returncode != 0
    assert "Error in rule cache_reference_logps" in run.stdout + run.stderr
    log_dir = work / "results" / "logs" / "cache_reference_logps"
    log = next(log_dir.iterdir()).read_text()
    assert "rule cache_reference_logps needs a CUDA GPU" in log and "--nv" in log, log[-2000:]
    assert not (work / CACHE).exists()
    # "at once": the job failed within a minute of its start (imports included), as Snakemake's
    # own timestamps before the job and before its error say
    out = run.stdout + run.stderr
    stamps = [
        (m.start(), m.group(1))
        for m in re.finditer(r"^\[(\w{3} \w{3} +\d+ [\d:]{8} \d{4})\]", out, flags=re.M)
    ]

    def stamp_before(marker: str) -> float:
        at = out.index(marker)
        text = [t for pos, t in stamps if pos < at][-1]
        return time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y"))

    took = stamp_before("Error in rule cache_reference_logps") - stamp_before(
        "rule cache_reference_logps:"
    )
    assert 0 <= took < 60, took


def test_a_stack_the_environment_lacks_stops_the_run_before_its_first_job(tmp_path):
    """Issue 29 item 4: `generation.engine: vllm` run from .venv (no --sdm), which has no vLLM,
    failed at the first generation job, after every training. The run now stops before its
    first job, naming the stack, the module and the ways to run it; nothing is written."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    work = copy_workflow(tmp_path / "repo")
    (work / "vllm.yaml").write_text("generation: {engine: vllm}\n")
    target = "results/generations/alpaca_eval/base/seed0.json"
    run = run_snakemake(
        work, target, "--cores", "1", "--configfile", "tests/config.tiny.yaml", "vllm.yaml",
        env=snakemake_env(PREFOPT_MIRROR=""), timeout=900,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "vllm: cannot import vllm (envs/vllm.yaml)" in out, out[-3000:]
    assert "--sdm conda" in out and "generation.engine: vllm" in out
    produced = [p for p in (work / "results").rglob("*") if p.is_file() and p.name != "README.md"]
    assert produced == [], produced[:5]
    # a dry run plans it as before (the check is the real run's, before its first job)
    plan = run_snakemake(work, target, "-n", "--configfile", "tests/config.tiny.yaml", "vllm.yaml")
    assert plan.returncode == 0 and "rule generate_alpaca_eval:" in plan.stdout
