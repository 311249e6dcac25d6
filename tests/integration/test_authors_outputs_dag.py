"""The authors' published outputs judged again, through the real Snakemake (issue 28 item 4).

A stand-in of the authors' artefacts (their ``annotations.json`` layout, rows written here, not
their data: their repository has no licence) sits in a mirror beside the shipped samples; the
run's AlpacaEval judge is an API judge served by ``standins.FakeOpenAI`` on 127.0.0.1, which ranks
first whichever output holds the word GOOD. So every number of the score table is known in
advance: the judge's verdicts, the retired judge's recorded ones, their agreement, the win rates.
"""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from helpers import EMBEDDED_DATA, copy_workflow, run_snakemake, shipped_alpaca_eval, snakemake_env
from standins import FakeOpenAI

from prefopt.judging import ALPACA_EVAL_API_JUDGE
from prefopt.judging.registry import judge_spec

SCORES = "results/scores/authors_alpaca_eval.csv"
#: (output_2 holds GOOD, the retired judge's recorded preference) per row, for two Table 1 rows.
ROWS = {
    "alpaca_eval_DPO": [(True, 2.0), (True, 2.0), (True, 1.0), (False, 1.0)],
    "alpaca_eval_Original": [(False, 1.0), (False, 2.0), (True, 2.0), (False, None)],
}


def write_authors_standin(mirror, reference: list[dict]) -> None:
    """The authors' layout: <folder>/annotations.json, 4 rows on the first 4 instructions, the
    baseline output_1 the run's own reference text for the first two rows only."""
    for folder, rows in ROWS.items():
        records = []
        for i, (good, preference) in enumerate(rows):
            base = reference[i]["output"] if i < 2 else f"another baseline text {i}"
            records.append(
                {
                    "instruction": reference[i]["instruction"],
                    "dataset": reference[i]["dataset"],
                    "output_1": base if good else base + " GOOD",
                    "generator_1": "text_davinci_003",
                    "output_2": f"the model's answer {i}" + (" GOOD" if good else ""),
                    "generator_2": folder,
                    "annotator": "alpaca_eval_gpt4_turbo_fn",
                    "preference": preference,
                }
            )
        (mirror / "authors_alpaca_eval" / folder).mkdir(parents=True)
        (mirror / "authors_alpaca_eval" / folder / "annotations.json").write_text(
            json.dumps(records)
        )


def make_with_the_api_standin(work, target: str) -> FakeOpenAI:
    """Make `target` with the tiny config and the overlay, the API judge served by a fresh
    FakeOpenAI; returns the server (its request counts)."""
    with FakeOpenAI(lifetime_s=600) as server:
        env = snakemake_env(
            PATH=os.defpath, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=server.base_url
        )
        proc = run_snakemake(
            work, "--cores", "1", target,
            "--configfile", "tests/config.tiny.yaml", "overlay.yaml", env=env,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return server


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("authors") / "repo")
    mirror = work.parent / "mirror"
    shutil.copytree(EMBEDDED_DATA, mirror)
    reference = shipped_alpaca_eval(mirror)
    write_authors_standin(mirror, reference)
    (work / "overlay.yaml").write_text(
        f"mirror_dir: {mirror}\n"
        f"judges: {{alpaca_eval: {ALPACA_EVAL_API_JUDGE}}}\n"
        "authors_outputs: {variants: [dpo, base]}\n"
    )
    server = make_with_the_api_standin(work, SCORES)
    return work, server, pd.read_csv(work / SCORES).set_index("variant")


def test_each_pair_asked_once_as_alpaca_eval_asked_it(run):
    _, server, _ = run
    assert server.served["?"] == 8  # 2 rows x 4 pairs, swap off: one request each


def test_scores_of_the_authors_outputs_under_the_run_judge(run):
    _, _, table = run
    dpo, base = table.loc["dpo"], table.loc["base"]
    model = judge_spec("alpaca_eval", ALPACA_EVAL_API_JUDGE).model
    for row in (dpo, base):
        assert row["status"] == "judged" and row["items"] == 4 and row["rows_in_file"] == 4
        assert row["judge"] == ALPACA_EVAL_API_JUDGE and model in row["judge_model"]
        # 4 of 805 instructions: no LC win rate, and the reason says so
        assert pd.isna(row["rejudged_lc_win_rate"]) and "805" in row["lc_missing_reason"]
    # the run's own baseline texts: rows 0 and 1 of DPO; Original's carry GOOD there
    assert dpo["baseline_outputs_matching_run_reference"] == "2 of 4"
    assert base["baseline_outputs_matching_run_reference"] == "0 of 4"
    # DPO: judge 2,2,2,1 vs recorded 2,2,1,1 -> 75 % vs 50 %, agreement 3 of 4
    assert dpo["rejudged_win_rate"] == pytest.approx(75.0)
    assert dpo["reference_win_rate"] == pytest.approx(50.0)
    assert (dpo["agreement"], dpo["agreement_pairs"]) == (pytest.approx(0.75), 4)
    # Original: judge 1,1,2,1 vs recorded 1,2,2,null -> the null is a failure of the retired
    # judge: left out of its win rate and of the agreement (2 of 3)
    assert base["rejudged_win_rate"] == pytest.approx(25.0)
    assert base["reference_win_rate"] == pytest.approx(200 / 3)
    assert base["reference_failures"] == 1 and base["rejudged_failures"] == 0
    assert (base["agreement"], base["agreement_pairs"]) == (pytest.approx(2 / 3), 3)


def test_rows_not_judged_say_why(run):
    _, _, table = run
    assert table.loc["aot", "status"].startswith("the authors published a leaderboard line only")
    assert table.loc["dpo_hinge", "status"] == "not selected (authors_outputs.variants)"
    assert table.loc["dpo_hinge", "paper_win_rate"] == pytest.approx(34.60)


def test_the_calibration_table_scores_the_judge_on_the_paper_pairs_too(run):
    """judge_calibration reads the same judgments: one source per Table 1 row judged, after
    alpaca_eval's recorded files, with the agreement the score table reports."""
    work, _, scores = run
    table_path = "results/tables/judge_calibration.csv"
    server = make_with_the_api_standin(work, table_path)
    assert server.served["?"] == 12  # only the 6 calibration pairs, both orders: not ours again
    table = pd.read_csv(work / table_path)
    agreement = table[table["statistic"] == "agreement"].set_index("source")["value"]
    for variant, folder in (("dpo", "alpaca_eval_DPO"), ("base", "alpaca_eval_Original")):
        assert agreement[folder] == pytest.approx(scores.loc[variant, "agreement"])
    sources = list(dict.fromkeys(table["source"]))
    assert sources[-3:] == ["alpaca_eval_DPO", "alpaca_eval_Original", "all"]
    md = (work / "results/tables/judge_calibration.md").read_text()
    assert "alpaca_eval_DPO: 4" in md and "text-davinci-003 in the paper authors'" in md
