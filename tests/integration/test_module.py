"""This workflow used as a Snakemake module by a Snakefile in another folder (issue 30).

A user keeps their own analysis folder and imports a clone of this repository, as
snakemake-workflows' catalog workflows are used:

    module prefopt:
        snakefile: "../prefopt/workflow/Snakefile"
        config: config
    use rule * from prefopt

Snakemake then runs in the user's folder (results/ lands there), while the package, the
notebooks, the paper's tables and the shipped data samples are read from the clone: every such
path is resolved against the workflow's own folder (`repo_path` in workflow/rules/common.smk),
a relative mirror_dir too.
"""

from __future__ import annotations

import json

import pytest
from helpers import clone_workflow, planned_jobs, run_snakemake, snakemake_env

pytestmark = pytest.mark.e2e

MODULE_SNAKEFILE = """\
configfile: "../prefopt/config/config.yaml"
configfile: "../prefopt/config/embedded.yaml"


module prefopt:
    snakefile:
        "../prefopt/workflow/Snakefile"
    config:
        config


use rule * from prefopt
"""


def planned(workdir, *args: str) -> dict[str, int]:
    return planned_jobs(workdir, *args, env=snakemake_env(PATH="/usr/bin:/bin"))


@pytest.fixture(scope="module")
def folders(module_tmp_path):
    repo = clone_workflow(module_tmp_path / "prefopt")
    analysis = module_tmp_path / "analysis"
    analysis.mkdir()
    (analysis / "Snakefile").write_text(MODULE_SNAKEFILE)
    return repo, analysis


def test_the_embedded_dag_is_planned_the_same_from_another_folder(folders):
    repo, analysis = folders
    as_module = planned(analysis)
    direct = planned(repo, "--configfile", "config/embedded.yaml")
    assert as_module == direct
    assert as_module["train_policy"] == 4 and as_module["render_table1_alpaca_eval"] == 1


def test_jobs_run_there_read_the_module_and_write_the_users_folder(folders):
    """Jobs that read what the repository ships: the AlpacaEval prompts from the shipped samples
    (the embedded config's relative mirror_dir) and the paper's Table 1 (the audit)."""
    repo, analysis = folders
    targets = ["results/data/alpaca_eval.json", "results/tables/audit_paper_numbers.csv"]
    run = run_snakemake(analysis, "--cores", "1", *targets, env=snakemake_env(PATH="/usr/bin:/bin"))
    assert run.returncode == 0, run.stderr[-5000:]
    # the module's start hook ran (Snakemake calls only the main Snakefile's own): its preflight
    # printed the plan of the jobs this invocation runs
    assert "plan: 2 job(s) to run" in run.stderr, run.stderr[-3000:]
    assert "jobs by rule: audit_paper 1, prepare_alpaca_eval 1" in run.stderr
    for target in targets:
        assert (analysis / target).is_file(), target
        assert not (repo / target).exists(), target
    assert len(json.loads((analysis / targets[0]).read_text())) == 40  # embedded: max_prompts
    # nothing written names the machine's folders
    for path in (analysis / "results").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".md", ".log"):
            assert str(analysis.parent) not in path.read_text(errors="replace"), path
