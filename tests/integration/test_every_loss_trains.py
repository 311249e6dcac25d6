"""Every pairwise loss of config/config.yaml trains through the workflow and writes its
diagnostics."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from helpers import copy_workflow, run_snakemake

from prefopt.training.losses import LOSSES

pytestmark = [pytest.mark.e2e, pytest.mark.heavy]


def test_each_variant_trains_and_logs_diagnostics(repo, tmp_path):
    variants = yaml.safe_load((repo / "config/config.yaml").read_text())["variants"]
    # every pairwise loss; the seed methods (lambda-DPO, DCKD, ADPA) have their own end-to-end
    # test, tests/integration/test_seed_methods_e2e.py
    trained = sorted(v for v, spec in variants.items() if spec["loss"] in LOSSES)
    assert {variants[v]["loss"] for v in trained} == set(LOSSES), "a loss has no variant"
    targets = [f"results/train/{v}/seed0/diagnostics.csv" for v in trained]
    work = copy_workflow(tmp_path / "repo")
    proc = run_snakemake(
        work, *targets, "--cores", "2", "--configfile", "tests/config.tiny.yaml", timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for v in trained:
        diag = pd.read_csv(work / f"results/train/{v}/seed0/diagnostics.csv")
        assert len(diag) >= 1, v
        assert diag["loss"].notna().all() and diag["active_fraction"].between(0, 1).all(), v
        assert (work / f"results/train/{v}/seed0/model/model.safetensors").exists(), v
    hinge = pd.read_csv(work / "results/train/apo_hinge_zero/seed0/diagnostics.csv")
    assert {"active_fraction_chosen", "active_fraction_rejected"} <= set(hinge.columns)
