"""Corrupted inputs through Snakemake: a mirror file changed after it was verified stops the
stage that reads it, naming the file and both checksums, and the results already made stay."""

from __future__ import annotations

import shutil

import pytest
from helpers import copy_workflow, run_snakemake

pytestmark = pytest.mark.e2e

TARGETS = ("results/data/train_pairs.jsonl", "results/data/alpaca_eval.json")


def test_a_changed_mirror_file_stops_its_stage_and_keeps_earlier_results(tmp_path):
    work = copy_workflow(tmp_path / "repo")
    shutil.copytree(work / "workflow/resources/data", work / "mirror")
    (work / "mirror.yaml").write_text("mirror_dir: mirror\n")
    args = ("--cores", "1", "--configfile", "tests/config.tiny.yaml", "mirror.yaml")

    first = run_snakemake(work, *TARGETS, *args, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    pairs, items = (work / t for t in TARGETS)
    made = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (pairs, items)}
    log = work / "results/logs/prepare_preference_data.log"
    assert "sources checked against their records: 1 files" in log.read_text()

    source = work / "mirror/ultrafeedback_binarized/train.jsonl"
    original = source.read_bytes()
    source.write_bytes(original.replace(b'"score_chosen": ', b'"score_chosen": 1', 1))
    broken = run_snakemake(work, *TARGETS, *args, timeout=600)
    out = broken.stdout + broken.stderr
    assert broken.returncode != 0 and "Error in rule prepare_preference_data" in out
    message = log.read_text()
    assert f"{source.relative_to(work)}: sha256 " in message and "SHA256SUMS records" in message
    assert items.read_bytes() == made[items][0]  # the other stage's result is untouched
    assert items.stat().st_mtime_ns == made[items][1]
    assert "train_policy" not in out and "cache_reference_logps" not in out  # nothing later ran

    source.write_bytes(original)  # restored: the rerun makes the same pairs as before
    again = run_snakemake(work, *TARGETS, *args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert pairs.read_bytes() == made[pairs][0]
