"""Code-quality gates that CI enforces: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import re
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
    proc = run(repo, str(BIN / "snakefmt"), "--check", "workflow/Snakefile", "workflow/rules")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean(repo):
    proc = run(repo, str(BIN / "ruff"), "check", "workflow", "tests", "containers")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean(repo):
    proc = run(repo, str(BIN / "ruff"), "format", "--check", "workflow", "tests", "containers")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_rule_has_log_benchmark_conda_and_container(repo):
    """The house rule for every rule with an action: its log, its timing, its software stack.
    A rule made in a loop (`rule:` indented, its name from `name:`, as artifacts.smk's render
    rules) is read like the others."""
    missing, n_rules, looped = [], 0, []
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        rule = r"^(?P<ind> *)rule(?: (?P<name>\w+))?:\n(?P<body>(?:(?P=ind) {4}.*\n|\n)*)"
        for m in re.finditer(rule, smk.read_text(), flags=re.M):
            ind, name, body = m["ind"], m["name"], m["body"]
            if name is None:
                name = re.search(rf"^{ind} {{4}}name:\s*(.+)", body, flags=re.M)[1].strip()
                looped.append(name)
            n_rules += 1
            for directive in ("log", "benchmark", "conda", "container"):
                if not re.search(rf"^{ind} {{4}}{directive}:", body, flags=re.M):
                    missing.append(f"{smk.name}: rule {name} has no {directive}:")
    assert missing == []
    assert n_rules >= 30  # every stage's rules were read
    assert 'f"render_{_artifact}"' in looped  # ...and the render rules' loop
