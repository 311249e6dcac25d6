"""A site profile for profiles/slurm: the cluster's partitions, account and job-status command.

The SLURM executor plugin passes ``-p``/``-A`` from the ``slurm_partition``/``slurm_account``
resources, so those must be set per job. A second ``--profile`` replaces whole top-level keys,
so the site profile repeats profiles/slurm's ``default-resources`` (the small CPU jobs) with the
site's values added, and gives each rule that asks for a GPU (prefopt.resources.RULE_NEEDS) the
GPU partition. What each job needs (gpu, mem_mb, runtime) stays in its rule: ``set-resources``
here names only the partition and account, which Snakemake merges into the rule's resources.
This module writes one (``workflow/bin/slurm-site-profile``), so nothing is copied by hand.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from prefopt.resources import RULE_NEEDS

SLURM_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "slurm" / "config.yaml"


def site_profile(
    profile: dict[str, Any],
    partition: str | None = None,
    gpu_partition: str | None = None,
    account: str | None = None,
) -> dict[str, Any]:
    """profiles/slurm's default resources with `partition` and `account` added; every GPU rule
    gets `gpu_partition` (default: `partition`) and `account`, nothing else."""
    site: dict[str, Any] = {}
    if account:
        site["slurm_account"] = account
    defaults = {**profile.get("default-resources", {}), **site}
    if partition:
        defaults["slurm_partition"] = partition
    out: dict[str, Any] = {"default-resources": defaults}
    chosen = gpu_partition or partition
    if chosen or site:
        out["set-resources"] = {
            rule: {**site, **({"slurm_partition": chosen} if chosen else {})}
            for rule in sorted(RULE_NEEDS)
        }
    return out


#: The longest pause the SLURM executor plugin (2.x) leaves between two status queries (its
#: ``max_sleep_time``): a finished job must stay visible to the status command that long.
PLUGIN_MAX_POLL_S = 180


def _config_value(scontrol_config: str, key: str) -> str | None:
    m = re.search(rf"^{key}\s*=\s*(.*?)\s*$", scontrol_config, re.M)
    return m[1] if m else None


def min_job_age_s(scontrol_config: str) -> int | None:
    """MinJobAge of `scontrol show config` in seconds (``300 sec``), None when absent."""
    value = _config_value(scontrol_config, "MinJobAge")
    m = re.match(r"(\d+)", value or "")
    return int(m[1]) if m else None


def status_command(scontrol_config: str) -> tuple[str, str]:
    """The plugin's job-status command for a cluster, from its `scontrol show config`, and why.

    With accounting (AccountingStorageType other than accounting_storage/none, i.e. slurmdbd),
    ``sacct``: finished jobs stay in the database however soon slurmctld forgets them. Without
    it, ``sacct`` cannot answer and the plugin would wait forever, so ``squeue``, which sees a
    finished job for MinJobAge seconds after it ends: enough only when MinJobAge exceeds the
    plugin's longest pause between queries (else the reason says so)."""
    storage = _config_value(scontrol_config, "AccountingStorageType") or "accounting_storage/none"
    if storage.strip().lower() not in ("accounting_storage/none", "(null)", "none", ""):
        return "sacct", f"accounting is on ({storage}): sacct keeps every finished job"
    age = min_job_age_s(scontrol_config)
    reason = f"no accounting ({storage}): squeue, which shows finished jobs for MinJobAge"
    if age is not None and age <= PLUGIN_MAX_POLL_S:
        reason += (
            f" = {age} s, NOT longer than the plugin's {PLUGIN_MAX_POLL_S} s between status "
            "queries: a job may end and vanish unseen, and the run wait for it forever. Ask "
            f"the administrators for MinJobAge > {PLUGIN_MAX_POLL_S} s or for accounting"
        )
    else:
        reason += f" = {age if age is not None else '?'} s"
    return "squeue", reason


def cluster_config() -> str:
    """`scontrol show config` of the cluster this machine submits to."""
    return subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partition", help="partition of CPU jobs (default: the cluster's)")
    ap.add_argument("--gpu-partition", help="partition of GPU jobs (default: --partition)")
    ap.add_argument("--account", help="account (-A) of every job (default: none)")
    ap.add_argument(
        "--status-command",
        choices=("auto", "sacct", "squeue"),
        default="auto",
        help="how the plugin asks SLURM for job states: auto (default) reads `scontrol show "
        "config` here: sacct where accounting is on, squeue otherwise",
    )
    ap.add_argument("--out", default="profiles/site", help="profile folder to write")
    args = ap.parse_args(argv)
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    site = site_profile(profile, args.partition, args.gpu_partition, args.account)
    if args.status_command == "auto":
        try:
            command, why = status_command(cluster_config())
        except (OSError, subprocess.SubprocessError) as err:
            print(f"slurm-site-profile: cannot read `scontrol show config` ({err}); pass "
                  "--status-command sacct (accounting) or squeue", file=sys.stderr)  # fmt: skip
            return 2
    else:
        command, why = args.status_command, "chosen with --status-command"
    site["slurm-status-command"] = command
    print(f"job status by {command}: {why}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by workflow/bin/slurm-site-profile from profiles/slurm/config.yaml; use it\n"
        f"# as: snakemake --profile profiles/slurm --profile {out}\n"
    )
    (out / "config.yaml").write_text(header + yaml.safe_dump(site, sort_keys=False))
    print(f"wrote {out / 'config.yaml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
