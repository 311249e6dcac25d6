"""The real DAG end to end on the tiny config: real model, real data, real TRL, real judge.

One run checks: the artifacts exist and are computed from the run; the runtime table lists every
job that ran; a rerun does nothing;
deleting one checkpoint reruns exactly its downstream jobs; retraining with the same seed,
killed with SIGKILL after its first checkpoint and resumed by the rerun, reproduces the same
weights, diagnostics and generations (CPU determinism, checkpoint/resume).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import clone_workflow, run_snakemake, snakemake_env
from safetensors.torch import load_file

pytestmark = pytest.mark.e2e


def snakemake(workdir: Path, *args: str, timeout: int = 900):
    """The tiny config with its own data (the samples the repository ships, no mirror), from
    an environment where the venv is NOT activated: `papermill`/`jupyter` in the render rules
    must still come from Snakemake's own environment."""
    env = snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath)
    return run_snakemake(
        workdir, "--cores", "2", "--configfile", "tests/config.tiny.yaml", *args,
        env=env, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def workdir(module_tmp_path):
    """A copy of the workflow alone in an otherwise empty folder: nothing beside it to lean on,
    committed to a git repository of its own, as a clone is (its provenance names the commit)."""
    return clone_workflow(module_tmp_path / "repo")


@pytest.fixture(scope="module")
def uninterrupted(workdir):
    """The tiny DAG run once, uninterrupted, and a copy of its results/ as they were then (the
    end-to-end test goes on to change them); weights are hard links (Snakemake replaces, never
    rewrites, a job's outputs)."""
    run = snakemake(workdir)
    snapshot = workdir.parent / "uninterrupted"

    def copy(src: str, dst: str) -> None:
        (os.link if src.endswith(".safetensors") else shutil.copy2)(src, dst)

    if run.returncode == 0:
        shutil.copytree(workdir / "results", snapshot / "results", copy_function=copy)
    return run, snapshot


def check_no_machine_paths(workdir: Path) -> None:
    """No file under results/ (logs, models, notebooks, tables; bytes, so binaries too) names
    this machine's layout: the working copy, the Python environment or the home folder."""
    needles = {str(workdir.resolve()), sys.prefix, sys.base_prefix, str(Path.home())} - {"/"}
    found = [
        f"{path.relative_to(workdir)}: {needle}"
        for path in sorted((workdir / "results").rglob("*"))
        if path.is_file()
        for needle in needles
        if needle.encode() in path.read_bytes()
    ]
    assert not found, "\n".join(found)


def check_provenance(workdir: Path) -> None:
    """results/provenance.json names the clean commit and the config; every table (CSV columns;
    Markdown and LaTeX footnotes) and every figure's notebook carries the same stamp."""
    res = workdir / "results"
    record = json.loads((res / "provenance.json").read_text())
    head = subprocess.run(
        ["git", "-C", str(workdir), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert record["code"] == {"commit": head, "dirty": False}
    assert record["stamp"] == f"code {head[:12]}, config {record['config_hash'][:12]}"
    assert record["seeds"] == [0] and record["config"]["model"]["slug"] == "smollm2-135m-instruct"
    assert record["judges"]["served"] == {"local": ["smollm2-135m-instruct"]}, record["judges"]
    assert record["model"]["files_sha256"] and record["packages"]["torch"]
    assert set(record["data_sha256"]) >= {"results/data/train_pairs.jsonl"}
    tables = sorted((res / "tables").iterdir())
    assert len(tables) >= 20
    for path in tables:
        if path.suffix == ".csv":
            table = pd.read_csv(path, dtype={"code_commit": str, "config_hash": str})
            assert (table["code_commit"] == head[:12]).all(), path
            assert (table["config_hash"] == record["config_hash"][:12]).all(), path
        else:
            assert f"Provenance: {record['stamp']}" in path.read_text(), path
    notebooks = {nb.stem: nb.read_text() for nb in (res / "notebooks").glob("*.ipynb")}
    assert set(notebooks) == {nb.stem for nb in (workdir / "notebooks").glob("*.ipynb")}
    assert all(record["stamp"] in text for text in notebooks.values())
    for figure in (res / "figures").glob("*.png"):  # the executed notebook prints its notes
        if figure.stem not in ("runtime_by_rule", "judge_calibration"):  # drawn by scripts
            drawn_by = [nb for nb, text in notebooks.items() if f"{figure.stem}.png" in text]
            assert drawn_by, figure
            assert f"figure note: Provenance: {record['stamp']}" in notebooks[drawn_by[0]]


def kill_after(workdir: Path, args: list[str], marker: Path, timeout_s: float = 900) -> None:
    """Start Snakemake in a session of its own; once `marker` exists, SIGKILL the whole
    session (Snakemake and every job it started), as a node failure would."""
    log = (workdir / "killed-run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--workflow-profile", "none", *args],
        cwd=workdir, env=snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not marker.exists():
        assert proc.poll() is None, (workdir / "killed-run.log").read_text()[-5000:]
        assert time.monotonic() < deadline, f"no {marker} after {timeout_s} s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    deadline = time.monotonic() + 30  # the jobs die as the kernel delivers the signal
    while left := subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).stdout:
        assert time.monotonic() < deadline, f"processes outlived the kill: {left.decode()}"
        time.sleep(0.1)


def test_tiny_dag_end_to_end(workdir, uninterrupted):
    run, _ = uninterrupted
    assert run.returncode == 0, run.stderr[-5000:]
    res = workdir / "results"

    table1 = pd.read_csv(res / "tables" / "table1_alpaca_eval.csv")
    assert len(table1) == 2  # base and apo_hinge_zero
    scores = pd.read_csv(res / "scores" / "alpaca_eval.csv")
    assert set(scores["variant"]) == {"base", "apo_hinge_zero"}
    assert scores["win_rate"].between(0, 100).all() and (scores["n_total"] == 4).all()
    fig1 = res / "figures" / "fig1_alpaca_eval_bars.png"
    assert fig1.stat().st_size > 10_000
    mt = pd.read_csv(res / "scores" / "mt_bench.csv")
    assert set(mt["turn"]) == {1, 2} and mt["category"].nunique() == 8
    assert mt["score"].between(1, 10).all()
    diag = pd.read_csv(res / "train" / "apo_hinge_zero" / "seed0" / "diagnostics.csv")
    assert {"active_fraction_chosen", "active_fraction_rejected"} <= set(diag.columns)
    # the step-0 reference check ran before the first step and passed (policy == cache)
    summary_file = res / "train" / "apo_hinge_zero" / "seed0" / "model" / "prefopt_training.json"
    summary = json.loads(summary_file.read_text())
    check = summary["reference_check"]
    assert check["pairs_checked"] == 4 and check["max_abs_diff_nats"] <= check["tolerance_nats"]
    assert summary["precision_resolved"] == check["precision"]
    assert len(diag) >= 1
    # The generation-free signal on the 8 held-out shipped rows (not the dataset's test split).
    heldout = pd.read_csv(res / "scores" / "heldout_preference.csv").set_index("variant")
    assert (heldout["n_pairs"] == 8).all() and (heldout["heldout"] == "train_rows_8_15").all()
    assert heldout.loc["base", "accuracy"] == 0.5 and heldout.loc["base", "mean_margin"] == 0
    assert heldout.loc["apo_hinge_zero", "mean_margin"] != 0
    assert heldout["accuracy"].between(0, 1).all() and heldout["note"].notna().sum() == 1
    table1_heldout = table1.set_index("variant")["heldout_accuracy_mean"]
    assert table1_heldout["base"] == 0.5 and table1_heldout.notna().all()
    hinge = heldout.loc["apo_hinge_zero"]  # how far training moved each likelihood
    shifts = hinge["mean_chosen_shift"] - hinge["mean_rejected_shift"]
    assert shifts == pytest.approx(hinge["mean_margin"], abs=1e-6)
    assert hinge["mean_chosen_shift"] != 0
    assert heldout.loc["base", ["mean_chosen_shift", "mean_rejected_shift"]].tolist() == [0, 0]
    # no DPO in the tiny run: nothing to separate from, and the table says so by being empty
    assert pd.read_csv(res / "tables" / "heldout_separation.csv").empty
    # The local judge against the retired GPT-4 judge's recorded verdicts: 2 shipped pairs per
    # source (one baseline win, one model win), both orders read, labelled a pipeline check.
    calib = pd.read_csv(res / "tables" / "judge_calibration.csv").set_index(["source", "statistic"])
    overall = calib.xs("all")
    assert overall.loc["pairs", "value"] == 6 and calib.loc[("gemini-pro", "pairs"), "value"] == 2
    assert overall.loc[["agreement", "position_consistency"], "n"].tolist() == [6, 6]
    assert overall.loc[["agreement", "length_preference_reference"], "value"].between(0, 1).all()
    assert overall.loc["reference_draws", "value"] == overall.loc["judge_failures", "value"] == 0
    assert set(calib["judge_label"]) == {"local judge smollm2-135m-instruct, pipeline check"}
    check_provenance(workdir)
    check_no_machine_paths(workdir)

    # The run's cost: the runtime table has one row per rule with the jobs that ran, and a total.
    ran = Counter(re.findall(r"^(?:local)?rule (\w+):$", run.stdout + run.stderr, flags=re.M))
    ran -= Counter({"all": ran["all"], "runtime_by_rule": ran["runtime_by_rule"]})
    runtime = pd.read_csv(res / "tables" / "runtime_by_rule.csv").set_index("rule")
    assert runtime["jobs"].drop("total").to_dict() == dict(ran), (runtime, ran)
    assert runtime.loc["total", "jobs"] == ran.total() and (runtime["total_s"] > 0).all()
    assert (res / "figures" / "runtime_by_rule.png").stat().st_size > 10_000

    # Everything is up to date: a second run plans nothing.
    again = snakemake(workdir, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    # A config edit reruns exactly the jobs whose params it changes (Snakemake's params trigger).
    def planned_with(overlay: str) -> set[str]:
        (workdir / "overlay.yaml").write_text(overlay)
        plan = run_snakemake(
            workdir, "-n", "--quiet", "rules",
            "--configfile", "tests/config.tiny.yaml", "overlay.yaml",
            env=snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath),
        )  # fmt: skip
        assert plan.returncode == 0, plan.stderr[-3000:]
        return set(re.findall(r"^(\w+)\s+\d+$", plan.stdout, flags=re.M)) - {"job", "total"}

    lr = planned_with("training: {learning_rate: 1.0e-5}\n")
    assert "train_policy" in lr and "cache_reference_logps" not in lr, lr
    assert "cache_reference_logps" in planned_with("training: {max_length: 80}\n")
    assert (
        planned_with(
            "training: {threads: 2, checkpoint_steps: 1, gpus_per_job: 2}\njudges: {threads: 2}\n"
        )
        == set()
    )
    assert planned_with("variants: {apo_hinge_zero: {label: renamed}}\n") <= {
        "aggregate_scores",
        "all",
        "runtime_by_rule",  # after every other target of the run
        "write_provenance",  # a new config hash: a new record, and every table restamped
        "audit_paper",
        "judge_calibration",  # restamped too
        "score_authors_outputs",  # restamped too (no authors' files here: why-not rows only)
    } | {r for r in lr if r.startswith("render_")}
    (workdir / "overlay.yaml").unlink()

    # Deleting one checkpoint reruns exactly the jobs downstream of it.
    ckpt = res / "train" / "apo_hinge_zero" / "seed0"
    before = {p: (ckpt / p).read_bytes() for p in ("diagnostics.csv",)}
    gen_file = res / "generations" / "alpaca_eval" / "apo_hinge_zero" / "seed0.json"
    gen_before = gen_file.read_bytes()
    weights_before = load_file(str(ckpt / "model" / "model.safetensors"))
    shutil.rmtree(ckpt / "model")
    plan = snakemake(workdir, "-n", "--quiet", "rules")
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout, flags=re.M))
    assert planned.get("train_policy") == "1"
    assert planned.get("generate_alpaca_eval") == "1" and planned.get("generate_mt_bench") == "1"
    for upstream in ("prepare_model", "cache_reference_logps", "prepare_preference_data"):
        assert upstream not in planned

    # Its retraining is killed (SIGKILL to Snakemake and its jobs, as a dead node) after its
    # first checkpoint; after --unlock, the same command with --rerun-incomplete
    # (profiles/default has it) resumes the job from there and ends where an uninterrupted run
    # ends.
    (workdir / "overlay.yaml").write_text("training: {checkpoint_steps: 1}\n")
    layers = ["--cores", "2", "--configfile", "tests/config.tiny.yaml", "overlay.yaml"]
    kill_after(workdir, layers, ckpt / "checkpoints" / "checkpoint-1" / "prefopt_checkpoint.json")
    assert not (ckpt / "model").exists()
    env = snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath)
    # Snakemake itself was killed: its lock stays until --unlock (README: the same as a user)
    assert "--unlock" in run_snakemake(workdir, *layers, "--rerun-incomplete", env=env).stderr
    assert run_snakemake(workdir, *layers, "--unlock", env=env).returncode == 0
    rerun = run_snakemake(workdir, *layers, "--rerun-incomplete",
                          env=snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath))  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    resumed = json.loads((ckpt / "model" / "prefopt_training.json").read_text())
    assert resumed["resumed_from_step"] == 1 and resumed["global_steps"] == summary["global_steps"]
    assert resumed["train_loss"] == pytest.approx(summary["train_loss"], rel=1e-6)
    assert not (ckpt / "checkpoints").exists()
    weights = load_file(str(ckpt / "model" / "model.safetensors"))
    assert weights.keys() == weights_before.keys()
    for name, tensor in weights_before.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # Same config and seed, same results on CPU.
    assert (ckpt / "diagnostics.csv").read_bytes() == before["diagnostics.csv"]
    assert gen_file.read_bytes() == gen_before
    # ...and the runtime table now has the retraining's measurement, and still counts every job
    # of the run: those that did not run again are in Snakemake's DAG, with their old files
    retrained = res / "benchmarks" / "train_policy" / "apo_hinge_zero" / "seed0.tsv"
    table = res / "tables" / "runtime_by_rule.csv"
    assert table.stat().st_mtime >= retrained.stat().st_mtime
    again = pd.read_csv(table).set_index("rule")
    assert again["jobs"].to_dict() == runtime["jobs"].to_dict(), (again, runtime)
    assert again.loc["train_policy", "total_s"] != runtime.loc["train_policy", "total_s"]

    # Changing a result file regenerates exactly the artifacts that read it (Snakemake compares
    # checksums, so the content must change, not just the mtime).
    scores = res / "scores" / "mt_bench.csv"
    original = scores.read_text()
    lines = original.splitlines()
    lines[1] = ",".join(lines[1].split(",")[:-1] + ["9.5"])
    scores.write_text("\n".join(lines) + "\n")
    plan = snakemake(workdir, "-n", "--quiet", "rules")
    planned = set(re.findall(r"^(\w+)\s+\d+$", plan.stdout, flags=re.M)) - {"job", "all", "total"}
    assert planned == {
        "render_fig2_3_mt_bench_radar",
        "render_paper_vs_reproduction",
        "write_provenance",  # records the judges as served, from the score files
        "runtime_by_rule",  # after every other target of the run
    }, planned
    scores.write_text(original)
    (workdir / "overlay.yaml").unlink()


def test_api_judges_leave_no_secret_behind(workdir):
    """The API judges through the DAG against a local fake OpenAI server (OPENAI_BASE_URL), a
    sentinel key in the environment, one request refused by a server that echoes the key back:
    afterwards no file of the run (results, logs, Snakemake's metadata) holds the key."""
    from standins import FakeOpenAI

    from prefopt.judging import ALPACA_EVAL_API_JUDGE, MT_BENCH_API_JUDGE

    sentinel = "sk-prefopt-SENTINEL-" + "0123456789abcdef" * 3
    (workdir / "api.yaml").write_text(
        f"judges: {{alpaca_eval: {ALPACA_EVAL_API_JUDGE}, mt_bench: {MT_BENCH_API_JUDGE}}}\n"
    )
    alpaca = f"results/judgments/alpaca_eval/{ALPACA_EVAL_API_JUDGE}/base/seed0/annotations.json"
    mt = f"results/judgments/mt_bench/{MT_BENCH_API_JUDGE}/base/seed0.jsonl"
    # real prompts carry no item marker: every request is item "?"; the first is refused (400,
    # content filter) with the Authorization header in the message, the rest answered
    with FakeOpenAI({"?": ["400"]}, lifetime_s=600) as server:
        env = snakemake_env(
            PREFOPT_MIRROR="", PATH=os.defpath, OPENAI_API_KEY=sentinel,
            OPENAI_BASE_URL=server.base_url,
        )  # fmt: skip
        run = run_snakemake(
            workdir, "--cores", "2", alpaca, mt,
            "--configfile", "tests/config.tiny.yaml", "api.yaml", env=env,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr[-5000:]
    annotations = json.loads((workdir / alpaca).read_text())
    turns = [json.loads(line) for line in (workdir / mt).read_text().splitlines()]
    assert len(annotations) == 4 and len(turns) == 16  # 4 prompts; 8 questions x 2 turns
    assert server.requests["?"] == 20 and server.served["?"] == 19
    refused = [r for r in [*annotations, *turns] if r["judge_error"] is not None]
    assert [r["judge_error"] for r in refused] == ["HTTP 400 content_filter"], refused
    caches = "".join(p.read_text() for p in (workdir / "results/judgments").rglob("*cache.jsonl"))
    assert "[REDACTED]" in caches  # the message the server echoed the key in, kept redacted
    leaks = [
        str(path.relative_to(workdir))
        for path in sorted(workdir.rglob("*"))
        if path.is_file() and ".git" not in path.parts and sentinel.encode() in path.read_bytes()
    ]
    assert not leaks, leaks
    assert sentinel not in run.stdout + run.stderr


#: Kill points of the test suite's chain (fault-report --kill runs all of
#: prefopt_tools.kill_anywhere's): three stages the end-to-end test does not already kill (training
#: is killed above).
CHAIN_POINTS = ("prepare_model", "judge_mt_bench", "render_*")


@pytest.mark.heavy  # ~7 min on 2 cores: the rest of CI's 45 minutes has no room for it
def test_killed_anywhere_the_rerun_ends_where_an_uninterrupted_run_ends(tmp_path, uninterrupted):
    """SIGKILL to Snakemake and its jobs at points over the DAG (prepare, judge, render), each
    time --unlock and the same command with --rerun-incomplete: the
    finished results/ equal the uninterrupted run's, file by file, except what
    prefopt_tools.kill_anywhere documents as run-specific (logs, timings, timestamps)."""
    from prefopt_tools.kill_anywhere import KILL_POINTS, compare_results, run_chain, survived

    run, snapshot = uninterrupted
    assert run.returncode == 0, run.stderr[-3000:]
    chained = clone_workflow(tmp_path / "repo")
    points = [p for p in KILL_POINTS if p.rule in CHAIN_POINTS]
    args = ["--cores", "2", "--configfile", "tests/config.tiny.yaml"]
    env = snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath)
    records, final_rc = run_chain(chained, args, env, points)
    log = (chained / "kill-chain.log").read_text()
    assert final_rc == 0, log[-5000:]
    reached = [r for r in records if r.reached]
    assert len(reached) == len(points), [(r.point.rule, r.reached) for r in records]
    assert any(r.killed_jobs for r in reached)  # the kills landed in running jobs
    differences = compare_results(snapshot, chained)
    assert differences == {}, differences
    assert all(survived(records, differences, final_rc))


def test_gpu_jobs_asked_for_at_least_the_memory_they_used(uninterrupted):
    """Issue 30: what the rules ask of a scheduler (prefopt.resources) covers what each job of
    the tiny run used (its benchmark file's max_rss), and the run printed those requests, and a
    warning for its GPU jobs that nothing limits (--cores 2, no --resources gpu=N)."""
    from prefopt.config import load_config
    from prefopt.resources import RULE_NEEDS, rule_resources

    run, snapshot = uninterrupted
    assert run.returncode == 0, run.stderr[-5000:]
    assert "each job asks a scheduler for" in run.stderr
    assert "nothing limits how many run at once" in run.stderr
    config = load_config(snapshot.parent / "repo" / "config/config.yaml",
                         snapshot.parent / "repo" / "tests" / "config.tiny.yaml")  # fmt: skip
    seen = set()
    for rule in RULE_NEEDS:
        for tsv in (snapshot / "results" / "benchmarks" / rule).rglob("*.tsv"):
            used = float(pd.read_csv(tsv, sep="\t")["max_rss"].iloc[-1])
            assert used <= rule_resources(config, rule)["mem_mb"], (tsv, used)
            seen.add(rule)
    assert {"train_policy", "cache_reference_logps", "generate_alpaca_eval"} <= seen, seen
