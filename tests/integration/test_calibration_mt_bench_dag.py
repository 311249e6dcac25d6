"""The MT-Bench judge calibration in the real DAG: planned by the paper config (download, prepare,
the API judge, the table), not by the embedded one (the repository ships no FastChat judgments),
with the local judge by the open-weights overlay; and run end to end with the local judge on a
tiny synthetic FastChat-format mirror that this test writes (not real data)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import EMBEDDED_DATA, copy_workflow, run_snakemake, snakemake_env
from standin_space import StandInSpaceHub
from standins import shipped_github
from test_dag import dry_run, planned_jobs

from prefopt.data import download
from prefopt.judging import calibration_mt_bench as cmt
from prefopt.judging.mt_bench import judge_prompt_name
from prefopt.runtime import read_jsonl

MT_RULES = (
    "download_mt_bench_calibration",
    "prepare_calibration_mt_bench",
    "judge_calibration_mt_bench_api",
    "judge_calibration_mt_bench_local",
)


@pytest.fixture(scope="module")
def work(module_tmp_path):
    return copy_workflow(module_tmp_path / "repo")


def test_paper_config_plans_the_mt_bench_calibration_and_the_embedded_one_does_not(work):
    log: list[str] = []
    jobs = dry_run(work, log=log)
    assert jobs["download_mt_bench_calibration"] == jobs["prepare_calibration_mt_bench"] == 1
    assert jobs["judge_calibration_mt_bench_api"] == jobs["judge_calibration"] == 1
    assert "judge_calibration_mt_bench_local" not in jobs
    planned = dict(planned_jobs(log[0]))
    # the paper's MT-Bench judge (its id is the {judge} wildcard the preflight reads)
    assert planned["judge_calibration_mt_bench_api"]["output"] == [
        "results/judgments/calibration/mt_bench/gpt-4-0613/judgments.jsonl"
    ]
    downloaded = planned["download_mt_bench_calibration"]["output"]
    for model in (
        "gpt-4",
        "gpt-3.5-turbo",
        "claude-v1",
        "vicuna-13b-v1.3",
        "alpaca-13b",
        "llama-13b",
    ):
        assert f"results/downloads/mt_bench_calibration/model_answer/{model}.jsonl" in downloaded
    assert "results/downloads/mt_bench_calibration/provenance.json" in downloaded
    table_inputs = planned["judge_calibration"]["input"]
    assert "results/data/calibration_mt_bench.json" in table_inputs
    assert "results/data/calibration_alpaca_eval.report.json" in table_inputs

    embedded: list[str] = []
    jobs = dry_run(work, "--configfile", "config/embedded.yaml", log=embedded)
    assert not [rule for rule in jobs if rule in MT_RULES]
    assert jobs["judge_calibration"] == 1  # the AlpacaEval half still runs
    assert "mt_bench_calibration" not in embedded[0]

    # an MT-Bench calibration alone makes the table; a mirror without its files says why
    (work / "mt_only.yaml").write_text(
        "calibration: {alpaca_eval: {sources: []}, mt_bench: {models: [gpt-4]}}\n"
    )
    alone: list[str] = []
    jobs = dry_run(work, "--configfile", "mt_only.yaml", log=alone)
    assert jobs["prepare_calibration_mt_bench"] == jobs["judge_calibration"] == 1
    assert "prepare_calibration_pairs" not in jobs
    mirror: list[str] = []
    jobs = dry_run(work, "--configfile", "config/embedded.yaml", "mt_only.yaml", log=mirror)
    assert not [rule for rule in jobs if "calibration" in rule]
    assert "no MT-Bench judge calibration in this run" in mirror[0]


def test_open_judge_overlay_grades_the_mt_bench_calibration_with_its_model(work):
    from prefopt.judging.registry import OPEN_WEIGHTS_JUDGES

    log: list[str] = []
    jobs = dry_run(work, "--configfile", "config/config.yaml", "config/open-judge.yaml", log=log)
    assert jobs["judge_calibration_mt_bench_local"] == 1
    assert "judge_calibration_mt_bench_api" not in jobs
    (local,) = [f for rule, f in planned_jobs(log[0]) if rule == "judge_calibration_mt_bench_local"]
    assert f"results/models/teachers/{OPEN_WEIGHTS_JUDGES[0].slug}" in local["input"]


# --------------------------------------------------------------------------- end to end

MODELS = {"m-strong": 8, "m-weak": 3}  # GPT-4's synthetic score of every turn


def synthetic_files() -> dict[str, str]:
    """{path under mt_bench_calibration/: text} in FastChat's formats: two models' answers to
    every question and GPT-4's grades of them (one -1, one missing)."""
    questions = read_jsonl(EMBEDDED_DATA / "mt_bench" / "question.jsonl")
    files: dict[str, str] = {}
    judgments = []
    for model, score in MODELS.items():
        answers = []
        for q in questions:
            text = ["A short helpful answer.", "A second answer."] if score > 5 else ["No.", "No."]
            answers.append(
                {
                    "question_id": q["question_id"],
                    "answer_id": f"{model}-{q['question_id']}",
                    "model_id": model,
                    "choices": [{"index": 0, "turns": text}],
                    "tstamp": 0.0,
                }
            )
            for turn in (1, 2):
                judgments.append(
                    {
                        "question_id": q["question_id"],
                        "model": model,
                        "judge": ["gpt-4", judge_prompt_name(q["category"], turn)],
                        "user_prompt": "...",
                        "judgment": f"Rating: [[{score}]]",
                        "score": score,
                        "turn": turn,
                        "tstamp": 0.0,
                    }
                )
        files[f"model_answer/{model}.jsonl"] = "".join(json.dumps(a) + "\n" for a in answers)
    judgments[0]["score"] = -1  # FastChat read no rating
    judgments.pop(1)
    files[cmt.JUDGMENT_FILE] = "".join(json.dumps(j) + "\n" for j in judgments)
    return files


def synthetic_mirror(root: Path) -> Path:
    """The shipped samples plus mt_bench_calibration/ (:func:`synthetic_files`), with their
    provenance record."""
    mirror = root / "mirror"
    shutil.copytree(EMBEDDED_DATA, mirror)
    out = mirror / cmt.LAYOUT_DIR
    record = {"source": "mt_bench_calibration", "space": "synthetic (tests)", "files": {}}
    for rel, text in synthetic_files().items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
        record["files"][rel] = {"sha256": hashlib.sha256(text.encode()).hexdigest()}
    (out / "provenance.json").write_text(json.dumps(record))
    return mirror


@pytest.mark.e2e
def test_local_judge_calibration_on_a_synthetic_fastchat_mirror(module_tmp_path, work):
    mirror = synthetic_mirror(module_tmp_path)
    overlay = work / "mt_e2e.yaml"
    overlay.write_text(
        f"mirror_dir: {mirror}\n"
        "calibration:\n  alpaca_eval: {sources: []}\n"
        f"  mt_bench: {{models: [{', '.join(MODELS)}], max_questions: 8}}\n"
    )
    table_csv = "results/tables/judge_calibration.csv"
    run = run_snakemake(
        work,
        table_csv,
        "--cores",
        "2",
        "--configfile",
        "tests/config.tiny.yaml",
        "mt_e2e.yaml",
        env=snakemake_env(PREFOPT_MIRROR=""),
        timeout=1500,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    judged = read_jsonl(work / "results/judgments/calibration/mt_bench/local/judgments.jsonl")
    assert len(judged) == 2 * 8 * 2  # two models x the 8-question draw x two turns
    assert {j["judge"][0] for j in judged} == {"local"}
    assert all(1.0 <= j["score"] <= 10.0 for j in judged)
    table = pd.read_csv(work / table_csv)
    assert set(table["benchmark"]) == {"mt_bench"}
    assert list(dict.fromkeys(table["source"])) == [*MODELS, "all"]
    value = table.set_index(["source", "statistic"])["value"]
    assert value[("all", "items")] == 32
    assert value[("all", "judge_failures")] == 0
    # the draw is one per category: question 81 (writing) is drawn only if it ranks first, so
    # count the GPT-4 failures the report saw instead of assuming
    report = json.loads((work / "results/data/calibration_mt_bench.report.json").read_text())
    failed = sum(
        r["reference_missing"] + r["reference_failed_parse"] for r in report["models"].values()
    )
    assert value[("all", "reference_failures")] == failed
    assert value[("all", "ranking_kendall_tau")] in (-1.0, 1.0)  # two models: one pair, no tie
    assert -1.0 <= value[("all", "score_pearson")] <= 1.0
    assert (work / "results/figures/judge_calibration.png").stat().st_size > 10_000
    md = (work / "results/tables/judge_calibration.md").read_text()
    assert "Judge calibration (MT-Bench): local judge" in md and "pipeline check" in md


@pytest.mark.e2e
def test_the_download_route_fetches_verifies_and_prepares_the_items(work, embedded_data):
    """mirror_dir: null: download_mt_bench_calibration fetches the configured models' files from
    a stand-in of the Space (FastChat's questions from a stand-in of raw GitHub), records the
    commit, and prepare_calibration_mt_bench reads them, checked against that record."""
    with StandInSpaceHub() as space, shipped_github(embedded_data) as github:
        sha = space.add_dataset(
            download.MT_BENCH_SPACE_REPO,
            {f"{cmt.SPACE_DIR}/{rel}": text.encode() for rel, text in synthetic_files().items()},
        )
        (work / "mt_download.yaml").write_text(
            "mirror_dir: null\n"
            f"calibration: {{mt_bench: {{models: [{', '.join(MODELS)}], max_questions: 16}}}}\n"
        )
        env = snakemake_env(HF_ENDPOINT=space.url, HF_HUB_OFFLINE="0", PREFOPT_MIRROR="",
                            **{download.GITHUB_RAW_URL_ENV: github.url})  # fmt: skip
        run = run_snakemake(
            work, "results/data/calibration_mt_bench.json", "--cores", "1",
            "--configfile", "mt_download.yaml", env=env,
        )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads(
        (work / "results/downloads/mt_bench_calibration/provenance.json").read_text()
    )
    assert record["requested_revision"] == "main" and record["resolved_commit"] == sha
    assert set(record["files"]) == set(cmt.layout_files(MODELS))
    items = json.loads((work / "results/data/calibration_mt_bench.json").read_text())
    assert items["models"] == list(MODELS) and len(items["questions"]) == 16
    assert len(items["reference"]) == 2 * 16 * 2
    log = (work / "results/logs/download_mt_bench_calibration.log").read_text()
    assert "is not a commit" in log  # the warning to pin the revision
