"""Code-quality gates that CI enforces: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(repo, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)


def test_snakemake_lint_is_clean(repo):
    proc = run(repo, str(BIN / "snakemake"), "--lint", "--workflow-profile", "none")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Congratulations" in out, out


def test_snakefmt_is_clean(repo):
    proc = run(repo, str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean(repo):
    proc = run(repo, str(BIN / "ruff"), "check", "workflow", "tests", "containers")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean(repo):
    proc = run(repo, str(BIN / "ruff"), "format", "--check", "workflow", "tests", "containers")
    assert proc.returncode == 0, proc.stdout + proc.stderr
