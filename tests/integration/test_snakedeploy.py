"""This workflow deployed with snakedeploy, as snakemake-workflows' catalog workflows are.

A user deploys a tagged release into a folder of their own:

    snakedeploy deploy-workflow https://github.com/<owner>/prefopt my-analysis --tag <tag>

which copies config/ (and profiles/) there and writes my-analysis/workflow/Snakefile, a module
whose snakefile is ``github("<owner>/prefopt", path="workflow/Snakefile", tag="<tag>")``.
Snakemake then reads every rule file, script and env file of the module out of its own bare
clone of the repository (``git show <tag>:<path>``), and the workflow extracts the same commit
once into .snakemake/prefopt-source/<commit>/ for what it reads by path: the package, the
notebooks, the shipped data (common.smk's source_tree).

The GitHub stand-in: the repository, committed and tagged, as a bare git repository on this
machine, and a git config of the test's own (GIT_CONFIG_GLOBAL) whose
``url.<folder>.insteadOf = https://github.com/`` sends both snakedeploy's clone and Snakemake's
clone there. snakedeploy, Snakemake's github() source and git run unchanged; the committed
source is the only copy of the code (the working tree it came from is deleted).
"""

from __future__ import annotations

import csv
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clone_workflow, planned_jobs, run_snakemake, snakemake_env

pytestmark = pytest.mark.e2e

OWNER_REPO = "prefopt-org/prefopt"
TAG = "v0.0.0-test"
SNAKEDEPLOY = Path(sys.executable).with_name("snakedeploy")
TARGETS = ["results/data/alpaca_eval.json", "results/tables/audit_paper_numbers.csv"]


def git(*args: str, cwd: Path, env: dict | None = None) -> str:
    run = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def planned(workdir: Path, env: dict) -> dict[str, int]:
    return planned_jobs(workdir, "--configfile", "config/embedded.yaml", env=env)


@pytest.fixture(scope="module")
def deployed(module_tmp_path):
    """(deployment folder, a plain clone of the same tag, the tag's commit, the environment)."""
    src = clone_workflow(module_tmp_path / "src")
    git("tag", TAG, cwd=src)
    commit = git("rev-parse", "HEAD", cwd=src)
    hosting = module_tmp_path / "hosting"
    git("clone", "--quiet", "--bare", str(src), str(hosting / f"{OWNER_REPO}.git"), cwd=src)
    shutil.rmtree(src)
    gitconfig = module_tmp_path / "gitconfig"
    gitconfig.write_text(f'[url "{hosting.as_uri()}/"]\n\tinsteadOf = https://github.com/\n')
    env = snakemake_env(
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        XDG_CACHE_HOME=str(module_tmp_path / "cache"),  # Snakemake's clone of the module
        PATH="/usr/bin:/bin",  # jobs find their tools without an activated venv
    )
    url = f"https://github.com/{OWNER_REPO}"
    deploy = module_tmp_path / "my-analysis"
    run = subprocess.run(
        [str(SNAKEDEPLOY), "deploy-workflow", url, str(deploy), "--tag", TAG],
        cwd=module_tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    clone = module_tmp_path / "clone"
    git("clone", "--quiet", "--branch", TAG, url, str(clone), cwd=module_tmp_path, env=env)
    return deploy, clone, commit, env


def test_snakedeploy_writes_a_github_module_and_copies_the_configs(deployed):
    deploy, clone, _, _ = deployed
    snakefile = (deploy / "workflow" / "Snakefile").read_text()
    source = f'github("{OWNER_REPO}", path="workflow/Snakefile", tag="{TAG}")'
    assert source in snakefile, snakefile
    assert 'configfile: "config/config.yaml"' in snakefile
    for name in ("config.yaml", "embedded.yaml", "open-judge.yaml"):
        assert filecmp.cmp(deploy / "config" / name, clone / "config" / name, shallow=False)
    assert (deploy / "profiles" / "default" / "config.yaml").is_file()
    assert not (deploy / "workflow" / "rules").exists()  # the rules stay in the module


def test_the_embedded_dag_is_planned_as_from_a_clone(deployed):
    deploy, clone, commit, env = deployed
    from_deployment = planned(deploy, env)
    assert from_deployment == planned(clone, env)
    assert from_deployment["train_policy"] == 4 and from_deployment["render_paper_claims"] == 1
    tree = deploy / ".snakemake" / "prefopt-source" / commit
    assert (tree / "workflow" / "prefopt" / "__init__.py").is_file()
    assert (tree / "workflow" / "resources" / "data").is_dir()


def test_jobs_run_the_tagged_commit_and_write_the_deployment(deployed):
    """Two jobs: one reads the shipped AlpacaEval prompts (the embedded config's relative
    mirror_dir, found in the extracted tree), one the paper's Table 1 (the audit); the stamp on
    the audit names the tag's commit, not "unknown" nor any other checkout."""
    deploy, _, commit, env = deployed
    run = run_snakemake(
        deploy, "--cores", "1", *TARGETS, "--configfile", "config/embedded.yaml", env=env
    )
    assert run.returncode == 0, run.stderr[-5000:]
    prompts = (deploy / TARGETS[0]).read_text()
    assert prompts.count('"instruction"') == 40  # embedded: max_prompts
    with (deploy / TARGETS[1]).open() as f:
        rows = list(csv.DictReader(f))
    assert rows and {row["code_commit"] for row in rows} == {commit[:12]}, rows[0]
    assert {row["code_dirty"] for row in rows} == {"False"}
    for path in (deploy / "results").rglob("*"):  # nothing written names the machine's folders
        if path.is_file() and path.suffix in (".json", ".csv", ".md", ".log"):
            assert str(deploy.parent) not in path.read_text(errors="replace"), path
