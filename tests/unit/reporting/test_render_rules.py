"""The render rules of workflow/rules/artifacts.smk, made by one loop over its table ART_RENDER:
every job runs the command its own rule plans, not another artifact's.

Snakemake evaluates a rule's `shell:` twice: when it reads the Snakefile (the plan that `-n -p`
prints, and the code that reruns compare) and again inside the job, where the loop's variables
hold their last values. A command built from the loop variable plans right and then runs the
last artifact's notebook in every job; only running the jobs shows it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import artifacts_workflow

REPO = Path(__file__).resolve().parents[3]


def test_each_render_job_runs_the_command_it_plans(tmp_path):
    """Run every render job for real with a `papermill` that writes down its arguments and fails
    (so nothing else runs): each artifact's job called it once, with its planned arguments."""
    pytest.importorskip("snakemake")
    snakefile, work = artifacts_workflow(
        tmp_path, {"containers": {"notebooks": "docker://example/notebooks"}}
    )
    calls, fake = tmp_path / "calls", tmp_path / "bin"
    calls.mkdir()
    fake.mkdir()
    (fake / "papermill").write_text(
        f'#!/bin/bash\nprintf "%s\\0" "$@" > "{calls}/$(basename "$1" .ipynb)"\nexit 1\n'
    )
    (fake / "papermill").chmod(0o755)
    run = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(work), "-c1"]
    env = {**os.environ, "PATH": f"{fake}:{Path(sys.executable).parent}:/usr/bin:/bin"}
    out = {"capture_output": True, "text": True, "env": env, "cwd": tmp_path}
    plan = subprocess.run([*run, "-n", "-p"], timeout=120, **out)
    assert plan.returncode == 0, plan.stderr + plan.stdout
    planned = {}
    for cmd in re.findall(r"^Shell command: (papermill .*)$", plan.stdout, flags=re.M):
        args = shlex.split(cmd.split(" > ", 1)[0])[1:]
        planned[Path(args[0]).stem] = args
    ran = subprocess.run([*run, "-k"], timeout=300, **out)
    assert ran.returncode != 0  # every job failed at papermill, as it should here
    called = {f.name: f.read_text().split("\0")[:-1] for f in calls.iterdir()}
    assert set(planned) == {Path(p).stem for p in (REPO / "notebooks").glob("*.ipynb")}
    assert called == planned
