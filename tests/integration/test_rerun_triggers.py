"""What reruns a finished job (issue 29 item 6): a changed input or param, never by itself an
edited script or environment file. Snakemake 9 also reruns on `code` and `software-env` by
default, so a new pin or a comment in a script would redo every training of a paper run; both
profiles set `rerun-triggers: [mtime, params, input]`, and `--list-changes code` still lists
what a code change touched. Run with the workflow profile Snakemake loads by itself
(profiles/default), as a user's plain `snakemake` is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, copy_workflow, snakemake_env

pytestmark = pytest.mark.e2e

TARGET = "results/data/mt_bench_questions.jsonl"


def snakemake(work: Path, *args: str, overlay: str | None = None) -> subprocess.CompletedProcess:
    """`snakemake` as a user types it: the default workflow profile, the tiny config (and an
    overlay on it)."""
    configs = ["tests/config.tiny.yaml", *([overlay] if overlay else [])]
    cmd = [sys.executable, "-m", "snakemake", TARGET, *args, "--configfile", *configs]
    return subprocess.run(cmd, cwd=work, env=snakemake_env(), capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_both_profiles_rerun_on_inputs_and_params_only(profile):
    cfg = yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())
    assert cfg["rerun-triggers"] == ["mtime", "params", "input"]


def test_an_edited_script_or_env_reruns_nothing_but_a_param_does(tmp_path):
    work = copy_workflow(tmp_path / "repo")
    first = snakemake(work, "--cores", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    # a real run prints its plan before the first job (prefopt.plan, onstart)
    assert "plan: 1 job(s) to run\n  jobs by rule: prepare_mt_bench 1" in first.stderr
    script = work / "workflow" / "scripts" / "prepare_mt_bench.py"
    script.write_text(script.read_text() + "# an edit that changes nothing\n")
    env = work / "envs" / "core.yaml"
    env.write_text(env.read_text() + "# a new pin would go here\n")
    again = snakemake(work, "-n")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
    listed = snakemake(work, "--list-changes", "code")
    assert TARGET in listed.stdout, listed.stdout[-2000:]  # the change is still there to see
    (work / "more.yaml").write_text("data: {mt_bench: {questions_per_category: 2}}\n")
    param = snakemake(work, "-n", overlay="more.yaml")
    assert "rule prepare_mt_bench:" in param.stdout, param.stdout[-3000:]
    assert "Params have changed since last execution" in param.stdout
