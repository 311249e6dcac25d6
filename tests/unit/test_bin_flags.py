"""The commands under workflow/bin/ behave as documented (issue 30, small frictions): --help
prints the usage without installing anything, a wrong interpreter or contradicting flags stop
with the reason before any work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import REPO, copy_workflow


def bash(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})  # fmt: skip


def test_setup_venv_help_prints_usage_and_installs_nothing(tmp_path):
    work = copy_workflow(tmp_path / "repo")  # no .venv there: an install would create one
    run = bash("workflow/bin/setup-venv", "--help", cwd=work)
    assert run.returncode == 0 and "PYTHON=/path/to/python3.11" in run.stdout
    assert not (work / ".venv").exists()
    bad = bash("workflow/bin/setup-venv", "--quick", cwd=work)
    assert bad.returncode == 2 and "unknown argument '--quick'" in bad.stderr
    assert not (work / ".venv").exists()


def test_setup_venv_refuses_another_python_naming_the_fix(tmp_path):
    work = copy_workflow(tmp_path / "repo")
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\necho 3.10\n")
    fake.chmod(0o755)
    run = bash("workflow/bin/setup-venv", cwd=work, PYTHON=str(fake))
    assert run.returncode == 2
    assert "needs Python 3.11" in run.stderr and "is Python 3.10" in run.stderr
    assert "PYTHON=" in run.stderr and not (work / ".venv").exists()


def test_test_command_refuses_heavy_with_quick_and_has_help():
    both = bash("workflow/bin/test", "--heavy", "--quick")
    assert both.returncode == 2
    assert "--heavy and --quick together" in both.stderr and "choose one" in both.stderr
    helped = bash("workflow/bin/test", "--help")
    assert helped.returncode == 0 and "--quick" in helped.stdout and "--heavy" in helped.stdout
