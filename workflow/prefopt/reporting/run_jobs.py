"""The jobs a run's runtime table covers, taken from Snakemake's own DAG.

The runtime table (rule runtime_by_rule) reads the benchmark file of every other job of the run.
A rule's inputs are fixed before Snakemake has built its DAG, so they cannot name those jobs
without writing the DAG out again by hand. Instead the rule's inputs are every other target of
the run (so every other job is upstream of it and it runs last), and the workflow's start hook
(`onstart` in workflow/rules/common.smk, which Snakemake calls once the DAG is built, before the
first job) writes the benchmark files of the jobs upstream of the table to a small JSON file
(`RUN_JOBS_FILE`), which the table's job reads. Jobs that do not need to run again are in the DAG
too, so the table keeps their earlier measurements.

No Snakemake import: `dag` is the scheduler's `snakemake.dag.DAG` (`jobs`, `needrun_jobs()`,
`dependencies`, `bfs`), used in the scheduling process only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Written at the start of every run that builds the runtime table, read by that rule's job.
RUN_JOBS_FILE = "results/benchmarks/runtime_by_rule.jobs.json"


def upstream_benchmarks(dag: Any, is_table_job: Callable[[Any], bool]) -> dict | None:
    """{rule: [benchmark file, ...]} of every job the table's job depends on, directly or not,
    in Snakemake's DAG (sorted, for a file that only changes when the DAG does); None when the
    table's job (the first needed job for which `is_table_job` is true) does not run."""
    table_jobs = [job for job in dag.needrun_jobs() if is_table_job(job)]
    if not table_jobs:
        return None
    files: dict[str, list[str]] = {}
    for job in dag.bfs(dag.dependencies, table_jobs[0]):
        if job is not table_jobs[0] and job.benchmark is not None:
            files.setdefault(job.rule.name, []).append(str(job.benchmark))
    return {rule: sorted(paths) for rule, paths in sorted(files.items())}


def write_run_jobs(path: str | Path, files_by_rule: dict[str, list[str]]) -> None:
    """The list, written whole or not at all (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"benchmarks_by_rule": files_by_rule}, indent=1) + "\n")
    tmp.replace(path)


def read_run_jobs(path: str | Path) -> dict[str, list[str]]:
    """The benchmark files by rule, as the start hook wrote them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the list of the run's jobs is missing. Snakemake's start hook writes it "
            "before the first job of a run that builds the runtime table (workflow/rules/"
            "common.smk, onstart); run the table through snakemake, not its script alone."
        )
    try:
        files_by_rule = json.loads(path.read_text())["benchmarks_by_rule"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a list of the run's jobs ({err})") from None
    return {str(rule): [str(f) for f in files] for rule, files in files_by_rule.items()}


def split_measured(files_by_rule: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """({rule: files that exist}, [files that do not]). A job that ran keeps its outputs when
    its benchmark file is deleted, and Snakemake does not run it again for that file alone."""
    present: dict[str, list[str]] = {}
    missing: list[str] = []
    for rule, files in files_by_rule.items():
        for f in files:
            if Path(f).is_file():
                present.setdefault(rule, []).append(f)
            else:
                missing.append(f)
    return present, missing
