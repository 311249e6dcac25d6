"""The workflow through a real SLURM cluster with profiles/slurm (pytest -m slurm).

A single-node cluster (slurmctld + slurmd + munged, one fake GPU as gres) is reused when one
already answers, or started with .ci/slurm-up.sh when this machine allows it (root, and either
the packages or apt-get); only daemons this module started are stopped (.ci/slurm-down.sh).
Where no cluster can be had the tests are skipped with the reason, never passed; set
PREFOPT_REQUIRE_SLURM=1 (CI) to turn that skip into a failure.

Each run goes through the documented command (profiles/README.md)

    timeout -s INT -k 30 <secs> .venv/bin/snakemake --profile profiles/slurm \
        --configfile tests/config.tiny.yaml

plus one extra `--profile` that only scales the per-job requests (mem_mb, cpus_per_task)
down to the size of this one small node; everything else comes from profiles/slurm, the
workflow profile profiles/default and the rules' own resources. It runs in
a scratch copy of the repository (tracked and untracked, non-ignored files), so results/ and
.snakemake/ of the checkout are untouched. The checks: rc 0, every non-local job was submitted
with sbatch (the plugin's "has been submitted with SLURM jobid" line, one per job), SLURM
reports each of those jobs COMPLETED, the GPU rules asked for gres:gpu:1, and every job left
its SLURM log.

Environment knobs: PREFOPT_SLURM_TIMEOUT (seconds, default 1800 for the tiny workflow),
LOCAL_SLURM_DIR (cluster state, default /tmp/prefopt-slurm), PREFOPT_SLURM_ACCOUNTING=1 (start
the cluster with accounting, slurmdbd on MariaDB, so the site profile chooses sacct; CI runs
without it, squeue).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SLURM_DIR = os.environ.get("LOCAL_SLURM_DIR", "/tmp/prefopt-slurm")
GPU_RULES = {
    "cache_reference_logps",
    "train_policy",
    "generate_alpaca_eval",
    "generate_mt_bench",
    "judge_alpaca_eval_local",
    "judge_mt_bench_local",
}
# What one job may ask of the test node (2 CPUs, ~23 GB; memory is not enforced there).
NODE_MAX = {"mem_mb": 2000, "cpus_per_task": 1}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def _cluster_ready() -> bool:
    if not shutil.which("sinfo") or not shutil.which("scontrol"):
        return False
    try:
        ping = _run(["scontrol", "ping"], timeout=20)
        state = _run(["sinfo", "-h", "-o", "%T"], timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    states = set(state.stdout.split())
    return "is UP" in ping.stdout and bool(states & {"idle", "mixed", "allocated"})


def _no_cluster(reason: str):
    if os.environ.get("PREFOPT_REQUIRE_SLURM") == "1":
        pytest.fail(f"PREFOPT_REQUIRE_SLURM=1 but no SLURM cluster: {reason}")
    pytest.skip(f"no SLURM cluster: {reason}")


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster with a GPU gres; stops it afterwards only if it started it."""
    started = False
    # PREFOPT_SLURM_ACCOUNTING=1: a cluster with slurmdbd (MariaDB), so sacct answers
    accounting = os.environ.get("PREFOPT_SLURM_ACCOUNTING", "0")
    env = {**os.environ, "LOCAL_SLURM_DIR": SLURM_DIR, "LOCAL_SLURM_ACCOUNTING": accounting}
    if not _cluster_ready():
        if os.geteuid() != 0:
            _no_cluster("none is running and starting one needs root")
        if not shutil.which("slurmctld") and not shutil.which("apt-get"):
            _no_cluster("none is running, slurm is not installed and there is no apt-get")
        # A state folder left by an earlier run that never stopped its cluster (a killed CI job)
        # would bring its jobs back, one of them perhaps holding the only GPU: start clean.
        _run(["bash", str(ROOT / ".ci" / "slurm-down.sh"), "--purge"], env=env, timeout=120)
        t0 = time.monotonic()
        up = _run(["bash", str(ROOT / ".ci" / "slurm-up.sh")], env=env, timeout=600)
        if up.returncode != 0:
            _no_cluster(f".ci/slurm-up.sh failed (rc={up.returncode}):\n{up.stdout[-2000:]}")
        started = True
        print(f"slurm-up: {time.monotonic() - t0:.1f}s")
    gres = _run(["sinfo", "-h", "-o", "%G"], timeout=20).stdout
    if "gpu" not in gres:
        if started:
            _run(["bash", str(ROOT / ".ci" / "slurm-down.sh")], env=env, timeout=120)
        _no_cluster(f"the running cluster offers no GPU gres (sinfo %G: {gres.strip()!r})")
    try:
        yield {"started": started}
    finally:
        if started:
            down = _run(["bash", str(ROOT / ".ci" / "slurm-down.sh"), "--purge"], env=env,
                        timeout=120)  # fmt: skip
            print(down.stdout)


# ----------------------------------------------------------------------------- helpers
def ci_sizes_profile(dest: Path, profile: Path = PROFILE) -> Path:
    """A profile that only scales the per-job requests down to the test node.

    profiles/slurm's default resources and, for every rule with needs of its own
    (prefopt.resources.RULE_NEEDS), its mem_mb and cpus_per_task capped at NODE_MAX; GPU
    requests and runtimes stay what the rules ask. Passed as the last --profile, it overrides
    exactly these two keys.
    """
    from prefopt.resources import RULE_NEEDS

    cfg = yaml.safe_load(profile.read_text())
    out = {"default-resources": dict(cfg.get("default-resources") or {})}
    out["default-resources"]["cpus_per_task"] = 1  # instead of the rules' threads
    for key, cap in NODE_MAX.items():
        if key in out["default-resources"]:
            out["default-resources"][key] = min(int(out["default-resources"][key]), cap)
    out["set-resources"] = {rule: dict(NODE_MAX) for rule in sorted(RULE_NEEDS)}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(out, sort_keys=False))
    return dest


def scratch_copy(dest: Path, src: Path = ROOT) -> Path:
    """Tracked and untracked (not ignored) files of the checkout, copied to dest/<name>
    (alone there: the tiny config reads the data the repository ships)."""
    listing = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                   cwd=src, check=True)  # fmt: skip
    repo = dest / src.name
    for rel in filter(None, listing.stdout.split("\0")):
        s = src / rel
        if not s.is_file():  # deleted but still tracked
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, repo / rel)
    return repo


def snakemake_slurm(
    workdir: Path, sizes: Path, extra: list[str], timeout_s: int, site: Path | None = None
):
    """Run the documented SLURM command in workdir (with a site profile when given, before the
    test's sizes); returns (rc, log text, seconds)."""
    cmd = [
        "timeout", "-s", "INT", "-k", "30", str(timeout_s),
        str(SNAKEMAKE), "--profile", "profiles/slurm",
        *(["--profile", str(site)] if site else []), "--profile", str(sizes), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}:{os.environ.get('PATH', '')}"}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seconds = time.monotonic() - t0
    (workdir / "snakemake-slurm.log").write_text(proc.stdout)
    print(f"{' '.join(cmd)}\n-> rc={proc.returncode} in {seconds:.1f}s")
    return proc.returncode, proc.stdout, seconds


def parse_jobs(log: str) -> dict[str, dict]:
    """Snakemake job id -> {rule, local, slurm_id} from a run's log."""
    jobs: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        m = re.match(r"^(local)?(?:rule|checkpoint) (\S+):$", line.strip())
        if m:
            current = {"rule": m[2], "local": bool(m[1]), "slurm_id": None}
            continue
        m = re.match(r"^jobid: (\d+)$", line.strip())
        if m and current is not None:
            jobs[m[1]] = current
            current = None
            continue
        m = re.search(r"Job (\d+) has been submitted with SLURM jobid (\d+)", line)
        if m:
            jobs.setdefault(m[1], {"rule": None, "local": False, "slurm_id": None})
            jobs[m[1]]["slurm_id"] = m[2]
    return jobs


def slurm_states(ids: list[str]) -> dict[str, str]:
    """Final state of each SLURM job: squeue, else the slurmctld log's _job_complete line."""
    q = _run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i %T"], timeout=30)
    states = dict(line.split()[:2] for line in q.stdout.splitlines() if line.strip())
    missing = [i for i in ids if i not in states]
    if missing:
        conf = _run(["scontrol", "show", "config"], timeout=30).stdout
        m = re.search(r"^SlurmctldLogFile\s*=\s*(\S+)", conf, re.M)
        text = Path(m[1]).read_text(errors="replace") if m and Path(m[1]).is_file() else ""
        for i in missing:
            done = re.search(rf"_job_complete: JobId={i} WEXITSTATUS (\d+)", text)
            states[i] = (
                ("COMPLETED" if done[1] == "0" else f"FAILED({done[1]})")
                if done
                else "UNKNOWN (gone from squeue and the slurmctld log)"
            )
    return states


def queue_now() -> str:
    """Every job SLURM knows, with its state and the reason it waits (for failure messages)."""
    q = _run(["squeue", "-h", "-t", "all", "-o", "%i %j %T %r %b"], timeout=30)
    return q.stdout + q.stderr


def check_run(workdir: Path, rc: int, log: str) -> dict[str, dict]:
    assert rc == 0, (
        f"snakemake exited {rc}:\n{log[-5000:]}\nsqueue (id name state reason gres):\n{queue_now()}"
    )
    jobs = parse_jobs(log)
    remote = {j: v for j, v in jobs.items() if not v["local"]}
    assert remote, f"no job went to SLURM:\n{log[-3000:]}"
    unsubmitted = [v["rule"] for v in remote.values() if not v["slurm_id"]]
    assert not unsubmitted, f"non-local jobs that never went through sbatch: {unsubmitted}"
    locals_submitted = [v["rule"] for v in jobs.values() if v["local"] and v["slurm_id"]]
    assert not locals_submitted, locals_submitted
    ids = sorted({v["slurm_id"] for v in remote.values()}, key=int)
    assert len(ids) == len(remote), "two Snakemake jobs share one SLURM job id"
    # SLURM's own view: squeue shows finished jobs for MinJobAge seconds (.ci/slurm-up.sh: 2 h);
    # older ones are looked up in the slurmctld log
    states = slurm_states(ids)
    assert states == {i: "COMPLETED" for i in ids}, states
    for v in remote.values():
        shown = _run(["scontrol", "-o", "show", "job", v["slurm_id"]], timeout=30).stdout
        if v["rule"] in GPU_RULES:
            assert re.search(r"gres[:/]gpu[:=]1\b", shown), f"{v['rule']}: no GPU\n{shown}"
        logs = list((workdir / ".snakemake" / "slurm_logs").rglob(f"{v['slurm_id']}.log"))
        assert logs, f"no SLURM log for {v['rule']} (job {v['slurm_id']})"
    return jobs


# ----------------------------------------------------------------------------- tests
TOY_SNAKEFILE = """\
localrules: all, prepare_toy

rule all:
    input: "results/gpu.txt", "results/cpu.txt", "results/flaky.txt"

rule prepare_toy:
    output: "results/data.txt"
    shell: "echo local ${{SLURM_JOB_ID:-none}} > {output}"

rule cpu_step:
    input: "results/data.txt"
    output: "results/cpu.txt"
    shell: "echo cpu ${{SLURM_JOB_ID:-none}} > {output}"

rule flaky_step:  # fails as a killed or pre-empted job would, the first time only
    input: "results/data.txt"
    output: "results/flaky.txt"
    shell:
        "if [ ! -e results/flaky.attempted ]; then touch results/flaky.attempted; exit 3; fi; "
        "echo retried ${{SLURM_JOB_ID:-none}} > {output}"

rule train_policy:
    input: "results/data.txt"
    output: "results/gpu.txt"
    resources: gpu=1
    shell: "echo gpu ${{SLURM_JOB_ID:-none}} ${{CUDA_VISIBLE_DEVICES:-unset}} > {output}"
"""


def site_profile_here(dest: Path) -> tuple[Path, str]:
    """workflow/bin/slurm-site-profile run against this cluster (status command: auto)."""
    run = _run(["bash", str(ROOT / "workflow" / "bin" / "slurm-site-profile"), "--out", str(dest)],
               timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    return dest, yaml.safe_load((dest / "config.yaml").read_text())["slurm-status-command"]


def test_profile_on_toy_workflow(slurm_cluster, tmp_path):
    """profiles/slurm itself, with the site profile written for this cluster: one local rule,
    two CPU jobs (one fails once and is submitted again: the profile's retries), one GPU job
    (about 20 s). The site profile asks job states by sacct where the cluster keeps accounting
    and by squeue where it does not (issue 29 item 8): the run must end either way."""
    wd = tmp_path / "toy"
    shutil.copytree(ROOT / "profiles", wd / "profiles")
    (wd / "Snakefile").write_text(TOY_SNAKEFILE)
    site, command = site_profile_here(tmp_path / "site")
    storage = re.search(
        r"^AccountingStorageType\s*=\s*(\S+)", _run(["scontrol", "show", "config"]).stdout, re.M
    )
    accounting = bool(storage) and storage[1] != "accounting_storage/none"
    assert command == ("sacct" if accounting else "squeue"), (storage, command)
    print(f"cluster accounting: {storage[1] if storage else '?'}; status command: {command}")
    rc, log, _ = snakemake_slurm(wd, ci_sizes_profile(tmp_path / "ci-sizes"), [], 300, site)
    jobs = check_run(wd, rc, log)
    remote = {v["rule"] for v in jobs.values() if not v["local"]}
    assert remote == {"cpu_step", "flaky_step", "train_policy"}
    flaky = next(j for j, v in jobs.items() if v["rule"] == "flaky_step")
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    attempts = [slurm_id for job, slurm_id in submitted if job == flaky]
    assert len(attempts) == 2, log[-3000:]  # the failed job, then its retry
    assert slurm_states(attempts[:1])[attempts[0]].startswith("FAILED"), attempts
    assert (wd / "results" / "flaky.txt").read_text().split()[0] == "retried"
    assert (wd / "results" / "data.txt").read_text().split() == ["local", "none"]
    gpu = (wd / "results" / "gpu.txt").read_text().split()
    assert gpu[0] == "gpu" and gpu[1] != "none" and gpu[2] == "0"  # a job, with the fake GPU 0


#: What the tiny SLURM run builds: model, data, reference caches, training and held-out scoring
#: for every variant, one generation and its judgment (every kind of GPU job, 12 jobs); the rest
#: of the DAG is the same code the local tiny e2e test runs, and would double CI's time here.
SLURM_TARGETS = [
    "results/scores/heldout_preference.csv",
    "results/judgments/alpaca_eval/local/apo_hinge_zero/seed0/annotations.json",
]


def test_tiny_workflow_through_slurm(slurm_cluster, tmp_path):
    """The tiny end-to-end configuration's GPU and CPU jobs, every non-local rule a SLURM job."""
    repo = scratch_copy(tmp_path)
    sizes = ci_sizes_profile(tmp_path / "ci-sizes")
    timeout_s = int(os.environ.get("PREFOPT_SLURM_TIMEOUT", "1800"))
    rc, log, seconds = snakemake_slurm(
        repo, sizes, [*SLURM_TARGETS, "--configfile", "tests/config.tiny.yaml"], timeout_s
    )
    jobs = check_run(repo, rc, log)
    remote_rules = {v["rule"] for v in jobs.values() if not v["local"]}
    print(f"tiny workflow: {len(jobs)} jobs, {len(remote_rules)} remote rules, {seconds:.0f}s")
    assert GPU_RULES & remote_rules, f"no GPU rule ran through SLURM: {sorted(remote_rules)}"
    expected = {"cache_reference_logps", "train_policy", "heldout_preference"}
    assert expected | {"generate_alpaca_eval", "judge_alpaca_eval_local"} <= remote_rules
    assert (repo / SLURM_TARGETS[0]).is_file() and (repo / SLURM_TARGETS[1]).is_file()
