"""`workflow/bin/plan`: the plan of a run without running it. Snakemake plans the DAG (a dry
run with the arguments given, e.g. `--configfile config/embedded.yaml`), and
`prefopt.plan` prints its jobs, the training steps and GPU hours, the API judges' requests and
dollars and the disk, as a real run prints them before its first job; plus whether this Python
holds every software stack the jobs need (for a run without --sdm)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from prefopt.config import load_config
from prefopt.judging.preflight import configured_api_judges
from prefopt.plan import plan_lines
from prefopt.resources import request_lines
from prefopt.runtime import STACK_MODULES, missing_stack_modules

REPO = Path(__file__).resolve().parents[2]


def planned_jobs(snakemake_args: list[str]) -> dict[str, int]:
    """{rule: jobs} of Snakemake's dry run (its "Job stats" table), the total left out."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *snakemake_args]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"plan: snakemake could not plan the run:\n{run.stderr[-3000:]}")
    jobs = {}
    table = (run.stdout + run.stderr).split("Job stats:", 1)[-1]
    for rule, count in re.findall(r"^(\w+)\s+(\d+)\s*$", table, flags=re.M):
        if rule not in ("total", "job"):
            jobs[rule] = int(count)
    return jobs


def configfiles(snakemake_args: list[str]) -> list[Path]:
    """config/config.yaml (the Snakefile's) and the --configfile overlays among the arguments."""
    files, taking = [REPO / "config/config.yaml"], False
    for arg in snakemake_args:
        if arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith("-"):
            taking = False
        elif taking:
            files.append(REPO / arg)
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds-per-step", type=float, default=None,
                    help="measured GPU seconds per optimiser step at the run's shape (gpu-smoke); "
                    "default: the config's resources.seconds_per_step, else the stated FLOP "
                    "estimate")  # fmt: skip
    args, snakemake_args = ap.parse_known_args(argv)
    config = load_config(*configfiles(snakemake_args))
    jobs = planned_jobs(snakemake_args)
    api = [(b, s) for b, s in configured_api_judges(config) if any("_api" in r for r in jobs)]
    if args.seconds_per_step is not None:
        config["resources"]["seconds_per_step"] = args.seconds_per_step
    print("\n".join(plan_lines(config, jobs, args.seconds_per_step, api)))
    print("\n".join(request_lines(config, jobs)))
    missing = missing_stack_modules(STACK_MODULES)
    lacking = "; ".join(f"{stack} (cannot import {', '.join(m)})" for stack, m in missing.items())
    print(
        "  software stacks: with --sdm conda or --profile profiles/apptainer each rule has its "
        "own; without, this Python runs every job and "
        + (
            f"lacks {lacking}: a run that plans such a job stops before its first one"
            if missing
            else "holds every stack"
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
