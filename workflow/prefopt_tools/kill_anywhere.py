"""Kill anywhere: SIGKILL the run at points spread over the DAG, rerun the same command, and
compare every file under results/ with an uninterrupted run of the same config.

One chained run: Snakemake starts; when the job of the next kill point has started (its log
file appears) and had `delay_s` to get into its work, the whole session (Snakemake and every
job) gets SIGKILL, as a dead node would; then, as the README says, `--unlock` and the same
command with `--rerun-incomplete`, until the next point; the last segment runs to the end. The
finished results are compared with those of an uninterrupted run, file by file: equal bytes,
or equal after leaving out what `RUN_SPECIFIC` documents as belonging to one run (timings,
timestamps), or, for weights, equal tensors within float tolerance (a resumed training job
sums in another order).

`workflow/bin/fault-report --kill` runs the full campaign on the tiny config (both runs, ~20 min
on 2 cores); the test suite runs a shorter chain against the end-to-end test's run.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KillPoint:
    """Kill once a job of `rule` has run `delay_s` seconds (its log file, `log_glob` under the
    work folder, was written after the segment started)."""

    rule: str
    log_glob: str
    delay_s: float


#: Spread over the tiny DAG in the order its jobs start: prepare, cache, train, held-out,
#: generate, judge, aggregate, render, provenance.
KILL_POINTS = (
    KillPoint("prepare_model", "results/logs/prepare_model/*.log", 3.0),
    KillPoint("prepare_preference_data", "results/logs/prepare_preference_data.log", 0.0),
    KillPoint("cache_reference_logps", "results/logs/cache_reference_logps/*.log", 4.0),
    KillPoint("train_policy", "results/logs/train_policy/*/seed*.log", 8.0),
    KillPoint("heldout_preference", "results/logs/heldout_preference/*/seed*.log", 3.0),
    KillPoint("generate_alpaca_eval", "results/logs/generate_alpaca_eval/*/seed*.log", 4.0),
    KillPoint("generate_mt_bench", "results/logs/generate_mt_bench/*/seed*.log", 4.0),
    KillPoint("judge_alpaca_eval", "results/logs/judge_alpaca_eval/*/*/seed*.log", 4.0),
    KillPoint("judge_mt_bench", "results/logs/judge_mt_bench/*/*/seed*.log", 4.0),
    KillPoint("aggregate_scores", "results/logs/aggregate_scores.log", 1.0),
    KillPoint("render_*", "results/logs/render_*.log", 3.0),
    KillPoint("runtime_by_rule", "results/logs/runtime_by_rule.log", 0.5),
)

#: Files (glob under results/) whose content belongs to one run, and why. Everything else must
#: be equal to the uninterrupted run's.
RUN_SPECIFIC = {
    "results/logs/*": "job logs: timestamps, timings, and the resume messages of a rerun",
    "results/benchmarks/*": "per-job wall time and memory (Snakemake's benchmark: files)",
    "results/tables/runtime_by_rule.*": "the run's cost table, from the benchmark files",
    "results/figures/runtime_by_rule.png": "the run's cost figure",
}
#: JSON keys that hold a run's timings or its resume history, left out when comparing JSON
#: (the training summary; papermill's and the notebook cells' execution metadata).
RUN_SPECIFIC_KEYS = {
    "train_runtime_s": "wall time of the training loop",
    "train_runtime": "the same, in the trainer's log history",
    "tstamp": "when FastChat's answer and judgment records were written (MT-Bench)",
    "train_samples_per_second": "throughput",
    "train_steps_per_second": "throughput",
    "resumed_from_step": "where a killed training job resumed (None when it was not killed)",
    "peak_gpu_memory_bytes": "the training job's GPU memory high-water mark (None on a CPU)",
    "papermill": "papermill's start/end times and durations",
    "execution": "the notebook cells' execution timestamps",
}
#: Largest |difference| between a resumed and an uninterrupted training job's weights.
WEIGHTS_ATOL = 1e-5


@dataclass
class KillRecord:
    point: KillPoint
    reached: bool
    killed_jobs: list[str] = field(default_factory=list)
    seconds_into_run: float = 0.0


def _incomplete_outputs(workdir: Path) -> list[str]:
    """Outputs Snakemake had marked incomplete (jobs running) — what the kill interrupted."""
    folder = workdir / ".snakemake" / "incomplete"
    out = []
    for marker in folder.rglob("*") if folder.is_dir() else []:
        if not marker.is_file() or marker.name.startswith("@"):
            continue  # long keys are split into @-prefixed folders: their last part is the file
        parts = [p.name.lstrip("@") for p in marker.relative_to(folder).parents if p.name]
        encoded = "".join(reversed(parts)) + marker.name
        try:
            path = base64.urlsafe_b64decode(encoded).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        out.append(os.path.relpath(path, workdir) if os.path.isabs(path) else path)
    return sorted(out)


def _started_since(workdir: Path, pattern: str, since: float) -> bool:
    return any(p.stat().st_mtime >= since for p in workdir.glob(pattern))


def _snakemake(workdir: Path, args: list[str], env: dict[str, str], log: Path, **kw: Any):
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "none", *args]
    with open(log, "a") as fh:
        return subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT, **kw
        )


def _kill_session(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).stdout:
        if time.monotonic() > deadline:
            raise RuntimeError("processes outlived the kill")
        time.sleep(0.1)


def run_chain(
    workdir: str | Path,
    args: list[str],
    env: dict[str, str],
    points: Iterable[KillPoint] = KILL_POINTS,
    timeout_s: float = 3600,
) -> tuple[list[KillRecord], int]:
    """The chained run in `workdir`: killed at each point it reaches, then unlocked and rerun
    with `--rerun-incomplete`; returns the kill records and the last segment's exit status.

    Each segment waits for a job of any remaining point to start (the first in `points` order
    if several did) and kills there; the points left when a segment runs to its end had no job
    left to start (they ran, unkilled, in an earlier segment) and are recorded as not reached."""
    workdir = Path(workdir)
    log = workdir / "kill-chain.log"
    records: list[KillRecord] = []
    remaining = list(points)
    start = time.monotonic()
    rerun = [*args, "--rerun-incomplete"]
    while remaining:
        since = time.time()
        proc = _snakemake(workdir, rerun, env, log, start_new_session=True)
        hit = None
        while proc.poll() is None and hit is None:
            if time.monotonic() - start > timeout_s:
                _kill_session(proc)
                raise TimeoutError(f"the chained run took over {timeout_s} s")
            hit = next(
                (i for i, p in enumerate(remaining) if _started_since(workdir, p.log_glob, since)),
                None,
            )
            time.sleep(0.05)
        if hit is None:  # the run ended: nothing left to kill
            records += [KillRecord(p, False) for p in remaining]
            return records, proc.returncode
        point = remaining.pop(hit)
        time.sleep(point.delay_s)
        killed = _incomplete_outputs(workdir)
        if proc.poll() is not None:  # ended during the delay
            records += [KillRecord(p, False) for p in (point, *remaining)]
            return records, proc.returncode
        _kill_session(proc)
        records.append(KillRecord(point, True, killed, time.monotonic() - start))
        _snakemake(workdir, [*args, "--unlock"], env, log).wait()
    return records, _snakemake(workdir, rerun, env, log).wait()


# ------------------------------------------------------------------------------ work folders

#: Author and dates of the one commit of a clone made here: the same files give the same commit
#: id, so two clones' provenance stamps (which name the commit) agree.
CLONE_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "prefopt",
    "GIT_AUTHOR_EMAIL": "prefopt@example.org",
    "GIT_COMMITTER_NAME": "prefopt",
    "GIT_COMMITTER_EMAIL": "prefopt@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def copy_repository(source: str | Path, dest: str | Path) -> Path:
    """The repository's tracked and untracked, non-ignored files (what a clone plus the user's
    uncommitted work holds), without results/ or .venv/."""
    import shutil

    source, dest = Path(source), Path(dest)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in listed:
        if rel.startswith(("results/", ".venv/")) or not (source / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, dest / rel)
    return dest


def clone_repository(source: str | Path, dest: str | Path) -> Path:
    """`copy_repository` committed as a git repository of its own, as a clone is (provenance
    names the commit), with a fixed author and date (`CLONE_COMMIT_ENV`)."""
    dest = copy_repository(source, dest)
    env = {**os.environ, **CLONE_COMMIT_ENV}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "clone"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, capture_output=True, env=env)
    return dest


# ------------------------------------------------------------------------------ comparison


def _strip_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_keys(v) for k, v in value.items() if k not in RUN_SPECIFIC_KEYS}
    if isinstance(value, list):
        return [_strip_keys(v) for v in value]
    return value


def _same_json(a: Path, b: Path) -> bool:
    """Equal JSON (or JSON lines, row by row) once the run-specific keys are left out."""

    def load(path: Path) -> Any:
        text = path.read_text()
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return json.loads(text)

    try:
        return _strip_keys(load(a)) == _strip_keys(load(b))
    except (ValueError, UnicodeDecodeError):
        return False


def _same_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(
        torch.allclose(x[k].double(), y[k].double(), rtol=0, atol=WEIGHTS_ATOL) for k in x
    )


def run_specific(rel: str) -> str | None:
    """Why the file at `rel` (under the work folder) belongs to one run, or None."""
    return next((why for g, why in RUN_SPECIFIC.items() if fnmatch.fnmatch(rel, g)), None)


def compare_results(reference: str | Path, other: str | Path) -> dict[str, str]:
    """{file under results/: how it differs} for every file that differs between two runs'
    results/ beyond `RUN_SPECIFIC` (files only one run has count too)."""
    reference, other = Path(reference), Path(other)

    def files(root: Path) -> set[str]:
        return {
            p.relative_to(root).as_posix()
            for p in (root / "results").rglob("*")
            if p.is_file() and p.name != ".snakemake_timestamp"
        }

    mine, theirs = files(reference), files(other)
    out: dict[str, str] = {}
    for rel in sorted(mine | theirs):
        if run_specific(rel):
            continue
        if rel not in theirs or rel not in mine:
            out[rel] = "only in the uninterrupted run" if rel in mine else "only in this run"
            continue
        a, b = reference / rel, other / rel
        if a.read_bytes() == b.read_bytes():
            continue
        if rel.endswith((".json", ".jsonl", ".ipynb")) and _same_json(a, b):
            continue
        if rel.endswith(".safetensors") and _same_weights(a, b):
            continue
        out[rel] = "content differs"
    return out


def survived(records: list[KillRecord], differences: dict[str, str], final_rc: int) -> list[bool]:
    """Per reached kill point: the run finished and no output of the jobs it killed differs."""
    return [
        final_rc == 0
        and not any(
            d == k or d.startswith(k.rstrip("/") + "/") for k in r.killed_jobs for d in differences
        )
        for r in records
        if r.reached
    ]


# ------------------------------------------------------------------------------ the campaign

#: The README's command on the tiny config (the test suite's DAG: every stage, minutes on 2 cores).
TINY_ARGS = ["--cores", "2", "--configfile", "tests/config.tiny.yaml"]


def _env() -> dict[str, str]:
    """Offline, the shipped samples (no mirror override), the venv's Snakemake."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PREFOPT_MIRROR": ""}


def report(
    records: list[KillRecord], differences: dict[str, str], final_rc: int, out: Any = None
) -> int:
    """Print the campaign's figures; the number of reached points that were not survived."""
    out = out or sys.stdout
    reached = [r for r in records if r.reached]
    ok = survived(records, differences, final_rc)
    print(
        f"kill anywhere (SIGKILL to Snakemake and its jobs, then --unlock and the same command "
        f"with --rerun-incomplete): survived {sum(ok)}/{len(reached)} kill points, final run "
        f"exit status {final_rc}, files differing from the uninterrupted run beyond the "
        f"documented run-specific ones: {len(differences)}",
        file=out,
    )
    for r in records:
        if not r.reached:
            print(f"    not reached: {r.point.rule} (its jobs had finished)", file=out)
    for r, good in zip(reached, ok, strict=True):
        killed = ", ".join(r.killed_jobs) or "none running (between jobs)"
        print(
            f"    {'survived' if good else 'NOT SURVIVED'}: {r.point.rule} after "
            f"{r.seconds_into_run:.0f} s; killed while writing: {killed}",
            file=out,
        )
    for rel, how in differences.items():
        print(f"    differs: {rel}: {how}", file=out)
    for glob, why in RUN_SPECIFIC.items():
        print(f"    run-specific, not compared: {glob}: {why}", file=out)
    print(
        "    JSON keys left out: " + ", ".join(f"{k} ({v})" for k, v in RUN_SPECIFIC_KEYS.items()),
        file=out,
    )
    return len(reached) - sum(ok) + (final_rc != 0)


def campaign(root: str | Path, work: str | Path, points: Iterable[KillPoint] = KILL_POINTS) -> int:
    """The whole campaign on the tiny config: an uninterrupted run and the chained run, each in
    a clone of `root` under `work`, compared; prints the figures (`report`)."""
    work = Path(work)
    reference = clone_repository(root, work / "uninterrupted")
    chained = clone_repository(root, work / "killed")
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "none", *TINY_ARGS]
    with open(work / "uninterrupted.log", "w") as log:
        rc = subprocess.run(cmd, cwd=reference, env=_env(), stdout=log, stderr=log).returncode
    if rc != 0:
        print(f"the uninterrupted run failed (exit {rc}): see {work / 'uninterrupted.log'}")
        return 1
    records, final_rc = run_chain(chained, TINY_ARGS, _env(), points)
    return report(records, compare_results(reference, chained), final_rc)
