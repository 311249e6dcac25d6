"""A site profile for profiles/slurm: its resources, plus the cluster's partition and account.

The SLURM executor plugin passes ``-p``/``-A`` from the ``slurm_partition``/``slurm_account``
resources, so those must be set per job; and a second ``--profile`` (or ``--default-resources``
on the command line) replaces whole top-level keys. A site profile therefore repeats
profiles/slurm's ``default-resources`` and ``set-resources`` with the site's values added:
this module writes one (``workflow/bin/slurm-site-profile``), so nothing is copied by hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

SLURM_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "slurm" / "config.yaml"


def site_profile(
    profile: dict[str, Any],
    partition: str | None = None,
    gpu_partition: str | None = None,
    account: str | None = None,
    training_gpus: int | None = None,
) -> dict[str, Any]:
    """profiles/slurm's resource keys with `partition` for CPU jobs, `gpu_partition` (default:
    `partition`) for the rules that request a GPU, `account` for every job, and
    `training_gpus` GPUs for each train_policy job (config training.gpus_per_job, DDP)."""
    site: dict[str, Any] = {}
    if account:
        site["slurm_account"] = account
    defaults = {**profile.get("default-resources", {}), **site}
    if partition:
        defaults["slurm_partition"] = partition
    per_rule = {}
    for rule, res in (profile.get("set-resources") or {}).items():
        res = {**res, **site}
        if training_gpus and rule == "train_policy":
            res["gpu"] = training_gpus
        chosen = (gpu_partition or partition) if res.get("gpu") else partition
        if chosen:
            res["slurm_partition"] = chosen
        per_rule[rule] = res
    return {"default-resources": defaults, "set-resources": per_rule}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partition", help="partition of CPU jobs (default: the cluster's)")
    ap.add_argument("--gpu-partition", help="partition of GPU jobs (default: --partition)")
    ap.add_argument("--account", help="account (-A) of every job (default: none)")
    ap.add_argument(
        "--training-gpus",
        type=int,
        help="GPUs of each train_policy job: the config's training.gpus_per_job (default 1)",
    )
    ap.add_argument("--out", default="profiles/site", help="profile folder to write")
    args = ap.parse_args(argv)
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    site = site_profile(
        profile, args.partition, args.gpu_partition, args.account, args.training_gpus
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by workflow/bin/slurm-site-profile from profiles/slurm/config.yaml; use it\n"
        f"# as: snakemake --profile profiles/slurm --profile {out} --workflow-profile none\n"
    )
    (out / "config.yaml").write_text(header + yaml.safe_dump(site, sort_keys=False))
    print(f"wrote {out / 'config.yaml'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
