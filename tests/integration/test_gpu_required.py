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
