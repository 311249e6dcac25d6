"""MT-Bench judge calibration against FastChat's published GPT-4 grades
(prefopt.judging.calibration_mt_bench): the statistics on constructed data with known answers,
the question draw, the items with GPT-4's failures counted, the API judge against the local fake
OpenAI server, and the table, Markdown and figure with and without the AlpacaEval part. All data
here are synthetic, in FastChat's formats; the repository ships none of FastChat's judgments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from standins import FakeOpenAI

from prefopt.judging import calibration as cal
from prefopt.judging import calibration_mt_bench as cmt
from prefopt.judging.mt_bench import CATEGORIES

STAMP = "code 0123456789ab, config abcdef012345"
FAST = 200  # bootstrap resamples in tests


def _questions(per_category: int = 2) -> list[dict]:
    out, qid = [], 81
    for category in CATEGORIES:
        for k in range(per_category):
            out.append(
                {
                    "question_id": qid,
                    "category": category,
                    "turns": [f"{category} question {k}?", f"{category} follow-up {k}?"],
                }
            )
            qid += 1
    return out


def _records(judge_of, models=("a", "b", "c"), per_category=2, reference_of=None) -> pd.DataFrame:
    """Merged records: GPT-4's score = model rank + question effect, the judge's = judge_of(ref)."""
    rows = []
    for m, model in enumerate(models):
        for q in _questions(per_category):
            for turn in (1, 2):
                ref = (reference_of or (lambda m, q, t: 2.0 + 2 * m + (q % 3) + 0.5 * t))(
                    m, q["question_id"], turn
                )
                rows.append(
                    {
                        "model": model,
                        "question_id": q["question_id"],
                        "category": q["category"],
                        "turn": turn,
                        "reference_score": ref,
                        "judge_score": judge_of(ref),
                        "reference_prompt": "single-v1",
                        "judge_model": "jm",
                        "served_model": "jm-1",
                        "judge_error": None,
                    }
                )
    return pd.DataFrame(rows)


def _stat(table: pd.DataFrame, source: str, statistic: str) -> pd.Series:
    return table[(table["source"] == source) & (table["statistic"] == statistic)].iloc[0]


# --------------------------------------------------------------------------- statistics


def test_perfect_agreement_gives_one_everywhere():
    table = cmt.mt_bench_table(_records(lambda r: r), "j", "judge j", n_bootstrap=FAST)
    for source in ("a", "b", "c", cmt.ALL):
        assert _stat(table, source, "score_pearson")["value"] == pytest.approx(1.0)
        assert _stat(table, source, "score_spearman")["value"] == pytest.approx(1.0)
        assert _stat(table, source, "mean_abs_difference")["value"] == 0.0
    assert _stat(table, cmt.ALL, "ranking_kendall_tau")["value"] == pytest.approx(1.0)
    assert _stat(table, cmt.ALL, "ranking_spearman")["value"] == pytest.approx(1.0)
    assert _stat(table, cmt.ALL, "ranking_kendall_tau")["n"] == 3
    assert set(table["benchmark"]) == {"mt_bench"}
    assert list(table.columns) == list(cal.COLUMNS)
    # the ranking statistics only on the pooled row
    assert set(table.loc[table["statistic"].str.startswith("ranking"), "source"]) == {cmt.ALL}


def test_reversed_judge_reverses_the_ranking():
    """A judge scoring 11 - GPT-4's score: r = -1 and the models' order reversed, tau = -1."""
    table = cmt.mt_bench_table(_records(lambda r: 11.0 - r), "j", "judge j", n_bootstrap=FAST)
    assert _stat(table, cmt.ALL, "score_pearson")["value"] == pytest.approx(-1.0)
    assert _stat(table, cmt.ALL, "ranking_kendall_tau")["value"] == pytest.approx(-1.0)
    assert _stat(table, cmt.ALL, "ranking_spearman")["value"] == pytest.approx(-1.0)
    tau = _stat(table, cmt.ALL, "ranking_kendall_tau")
    assert tau["ci_low"] == pytest.approx(-1.0) and tau["ci_high"] == pytest.approx(-1.0)


def test_failures_on_either_side_are_dropped_and_counted():
    records = _records(lambda r: r)
    records.loc[[0, 5], "reference_score"] = math.nan  # GPT-4's -1: FastChat read no rating
    records.loc[[1, 5, 7], "judge_score"] = math.nan  # the judge's -1 or refusal
    records.loc[2, "judge_score"] = 10.0  # one disagreement among the rest
    table = cmt.mt_bench_table(records, "j", "judge j", n_bootstrap=FAST)
    a = records["model"] == "a"
    assert _stat(table, "a", "items")["value"] == a.sum() == 32
    assert _stat(table, "a", "reference_failures")["value"] == 2
    assert _stat(table, "a", "judge_failures")["value"] == 3
    compared = records[a].dropna(subset=["reference_score", "judge_score"])
    assert len(compared) == 32 - 4  # row 5 failed on both sides
    pearson = _stat(table, "a", "score_pearson")
    assert pearson["n"] == 28
    expected = stats.pearsonr(compared["judge_score"], compared["reference_score"]).statistic
    assert pearson["value"] == pytest.approx(expected)
    mad = _stat(table, "a", "mean_abs_difference")["value"]
    assert mad == pytest.approx(abs(10.0 - records.loc[2, "reference_score"]) / 28)
    assert _stat(table, cmt.ALL, "reference_failures")["value"] == 2
    assert _stat(table, cmt.ALL, "items")["value"] == 96


def test_pearson_interval_is_fishers_z_by_hand():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    r, (lo, hi) = cmt.pearson_fisher(x, y)
    z, half = math.atanh(r), 1.959963984540054 / math.sqrt(47)
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert (lo, hi) == pytest.approx((math.tanh(z - half), math.tanh(z + half)))
    assert lo < r < hi
    assert math.isnan(cmt.pearson_fisher([1, 2, 3], [1, 2, 4])[1][0])  # n < 4: no interval
    assert math.isnan(cmt.pearson_fisher([1, 1, 1, 1], [1, 2, 3, 4])[0])  # constant: undefined


def test_spearman_bootstrap_is_seeded_and_brackets_the_estimate():
    noisy = _records(lambda r: r + (hash(r) % 3))  # deterministic noise
    rng = np.random.default_rng(1)
    noisy["judge_score"] = noisy["reference_score"] + rng.normal(0, 1.5, len(noisy))
    one = cmt.mt_bench_table(noisy, "j", "judge j", n_bootstrap=FAST)
    two = cmt.mt_bench_table(noisy, "j", "judge j", n_bootstrap=FAST)
    pd.testing.assert_frame_equal(one, two)
    rho = _stat(one, cmt.ALL, "score_spearman")
    assert (
        rho["ci_low"] < rho["value"] < rho["ci_high"] and rho["ci_method"] == "bootstrap_questions"
    )
    assert _stat(one, cmt.ALL, "score_pearson")["ci_method"] == "fisher_z"


def test_ranking_agreement_by_hand():
    tau, rho = cmt.ranking_agreement([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert rho == pytest.approx(0.8)
    tau, _ = cmt.ranking_agreement([1.0, math.nan, 3.0], [3.0, 2.0, 1.0])  # a model without a score
    assert tau == pytest.approx(-1.0)


# --------------------------------------------------------------------------- items


def test_select_questions_is_stratified_stable_and_whole_by_default():
    questions = _questions(10)
    assert cmt.select_questions(questions) == questions
    eight = cmt.select_questions(questions, 8)
    assert sorted(q["category"] for q in eight) == sorted(CATEGORIES)  # one of each
    twenty = cmt.select_questions(questions, 20)
    assert {q["question_id"] for q in eight} <= {q["question_id"] for q in twenty}
    ids = [q["question_id"] for q in twenty]
    assert ids == sorted(ids)  # file order
    assert cmt.select_questions(questions, 8) == eight  # seeded by a hash: the same every time


def _answers(model: str, questions: list[dict]) -> list[dict]:
    return [
        {
            "question_id": q["question_id"],
            "answer_id": f"{model}-{q['question_id']}",
            "model_id": model,
            "choices": [{"index": 0, "turns": [f"{model} one", f"{model} two"]}],
            "tstamp": 0.0,
        }
        for q in questions
    ]


def _judgment(model: str, q: dict, turn: int, score: float, judge=("gpt-4", None)) -> dict:
    from prefopt.judging.mt_bench import judge_prompt_name

    return {
        "question_id": q["question_id"],
        "model": model,
        "judge": [judge[0], judge[1] or judge_prompt_name(q["category"], turn)],
        "user_prompt": "...",
        "judgment": f"[[{score}]]",
        "score": score,
        "turn": turn,
        "tstamp": 0.0,
    }


def test_items_keep_gpt4s_score_per_turn_and_count_its_failures():
    questions = _questions(1)
    answers = {m: _answers(m, questions) for m in ("x", "y")}
    judgments = [
        _judgment(m, q, t, 5) for m in ("x", "y", "other") for q in questions for t in (1, 2)
    ]
    judgments[0]["score"] = -1  # x, first question, turn 1: FastChat read no rating
    judgments.append(_judgment("y", questions[0], 1, 9))  # a repeated row: the last one counts
    judgments.append(_judgment("y", questions[1], 1, 1, judge=("claude-v1", "single-v1")))
    del judgments[3]  # x, second question, turn 2: no row at all
    items, report = cmt.calibration_items(questions, judgments, answers)
    assert items["models"] == ["x", "y"] and len(items["questions"]) == 8
    assert len(items["reference"]) == 2 * 8 * 2 and len(items["answers"]) == 2 * 8
    ref = {
        (r["model"], r["question_id"], r["turn"]): r["reference_score"] for r in items["reference"]
    }
    first, second = questions[0]["question_id"], questions[1]["question_id"]
    assert ref[("x", first, 1)] is None and ref[("x", second, 2)] is None
    assert ref[("y", first, 1)] == 9.0 and ref[("y", second, 1)] == 5.0  # not claude's row
    assert report["models"]["x"] == {
        "answers_in_file": 8,
        "items": 16,
        "reference_missing": 1,
        "reference_failed_parse": 1,
        "reference_other_prompt": 0,
    }
    assert report["models"]["y"]["reference_missing"] == 0
    note = cmt.items_note(report)
    assert "all 8 questions" in note and "x: 16 turns, 2 without a GPT-4 score" in note
    drawn, report = cmt.calibration_items(questions, judgments, answers, max_questions=3)
    assert len(drawn["questions"]) == 3 and "a category-stratified draw of 3" in cmt.items_note(
        report
    )
    with pytest.raises(ValueError, match="no answer to MT-Bench question"):
        cmt.calibration_items(questions, judgments, {"x": answers["x"][1:]})


def test_merged_records_mark_judge_failures_and_missing_judgments():
    questions = _questions(1)[:2]
    items, _ = cmt.calibration_items(
        questions,
        [_judgment("x", q, t, 6) for q in questions for t in (1, 2)],
        {"x": _answers("x", questions)},
    )
    judge = [_judgment("x", q, t, 7) for q in questions for t in (1, 2)][:-1]  # last one missing
    judge[0]["score"] = -1.0
    merged = cmt.merged_records(items, judge)
    assert merged["reference_score"].tolist() == [6.0] * 4
    assert merged["judge_score"].isna().tolist() == [True, False, False, True]
    assert merged["judge_error"].iloc[-1] == "no judgment"


def test_an_api_judge_grades_every_models_answers_with_fastchat_prompts(tmp_path, monkeypatch):
    """Against the local fake OpenAI server, whose rating is len(<marker>) % 10 + 1 of the
    ITEM-<marker> in the answer graded: answers written so its ratings are GPT-4's exactly."""
    from prefopt.data.prepare import read_jsonl
    from prefopt.judging.api import ApiJudgeClient
    from prefopt.runtime import read_jsonl as read_rows

    monkeypatch.setenv("PREFOPT_TEST_KEY", "sk-test")
    from helpers import EMBEDDED_DATA

    questions = read_rows(EMBEDDED_DATA / "mt_bench" / "question.jsonl")
    prompts = {p["name"]: p for p in read_jsonl(EMBEDDED_DATA / "mt_bench" / "judge_prompts.jsonl")}
    refs = {
        r["question_id"]: r
        for r in read_jsonl(EMBEDDED_DATA / "mt_bench" / "reference_answer" / "gpt-4.jsonl")
    }
    chosen = cmt.select_questions(questions, 8)
    score = {"strong": 8, "weak": 3}  # len(marker) % 10 + 1
    answers = {
        m: [
            {
                "question_id": q["question_id"],
                "choices": [
                    {
                        "index": 0,
                        "turns": [
                            f"turn one ITEM-{'s' * (s - 1)}",
                            f"turn two ITEM-{'s' * (s - 1)}",
                        ],
                    }
                ],
            }
            for q in chosen
        ]
        for m, s in score.items()
    }
    judgments = [_judgment(m, q, t, s) for m, s in score.items() for q in chosen for t in (1, 2)]
    items, _ = cmt.calibration_items(chosen, judgments, answers)
    with FakeOpenAI() as server:
        client = ApiJudgeClient(
            model="fake-judge",
            base_url=server.base_url,
            cache_path=tmp_path / "cache.jsonl",
            api_key_env="PREFOPT_TEST_KEY",
        )
        records = cmt.judge_with_api(client, items, prompts, refs)
        assert server.total == 2 * 8 * 2
    assert {r["model"] for r in records} == set(score)
    assert {r["judge"][1] for r in records} >= {"single-v1", "single-v1-multi-turn"}
    merged = cmt.merged_records(items, records)
    assert (merged["judge_score"] == merged["reference_score"]).all()
    table = cmt.mt_bench_table(merged, "gpt-x", "judge gpt-x", n_bootstrap=FAST)
    assert _stat(table, cmt.ALL, "mean_abs_difference")["value"] == 0.0
    assert _stat(table, cmt.ALL, "ranking_kendall_tau")["value"] == pytest.approx(1.0)
    assert set(table["served_model"]) == {"fake-judge-2024-01-01"}


# --------------------------------------------------------------------------- artifacts


def _alpaca_eval_records() -> list[dict]:
    return [
        {
            "source": "s1",
            "row": k,
            "instruction": f"i{k}",
            "output_1": "a" * (k + 1),
            "output_2": "b" * 3,
            "reference_annotator": "alpaca_eval_gpt4_turbo_fn",
            "reference_preference": ref,
            "preference": judge,
            "preference_original_order": judge,
            "preference_swapped_order": judge,
            "judge_model": "m",
            "served_model": "m",
        }
        for k, (ref, judge) in enumerate([(1, 1.2), (2, 1.8), (2, 1.3), (1, 1.1)])
    ]


def test_outputs_hold_both_benchmarks_and_an_mt_bench_panel(tmp_path):
    out = {k: tmp_path / f"judge_calibration.{k}" for k in ("csv", "md", "png", "pdf")}
    mt = {
        "judge": "local",
        "records": _records(lambda r: 11 - r),
        "models": ["c", "b", "a"],
        "items_note": "MT-Bench items: synthetic.",
        "n_bootstrap": FAST,
    }
    table = cal.write_calibration_outputs(
        _alpaca_eval_records(),
        *map(str, out.values()),
        judge="local",
        local_judge_model="smollm2-135m-instruct",
        provenance=STAMP,
        mt_bench=mt,
    )
    assert list(dict.fromkeys(table["benchmark"])) == ["alpaca_eval", "mt_bench"]
    mt_rows = table[table["benchmark"] == "mt_bench"]
    assert list(dict.fromkeys(mt_rows["source"])) == ["c", "b", "a", cmt.ALL]
    csv = pd.read_csv(out["csv"], dtype={"code_commit": str, "config_hash": str})
    assert len(csv) == len(table) and (csv["code_commit"] == "0123456789ab").all()
    md = out["md"].read_text()
    assert "Judge calibration (AlpacaEval)" in md and "Judge calibration (MT-Bench)" in md
    assert cal.NO_MT_BENCH_NOTE not in md and "MT-Bench items: synthetic." in md
    assert "| -1.00 [-1.00, -1.00]" in md  # the reversed ranking
    assert md.rstrip().endswith(f"Provenance: {STAMP} (full record: results/provenance.json).")
    assert out["png"].stat().st_size > 10_000 and out["pdf"].read_bytes().startswith(b"%PDF")
    alone = cal.write_calibration_outputs(
        [],
        *map(str, out.values()),
        judge="local",
        local_judge_model="smollm2-135m-instruct",
        mt_bench=mt,
    )
    assert set(alone["benchmark"]) == {"mt_bench"}
    assert "AlpacaEval" not in out["md"].read_text().split("\n")[0]
    without = cal.write_calibration_outputs(
        _alpaca_eval_records(), *map(str, out.values()), judge="local", local_judge_model=None
    )
    assert (
        set(without["benchmark"]) == {"alpaca_eval"}
        and cal.NO_MT_BENCH_NOTE in out["md"].read_text()
    )
    with pytest.raises(ValueError, match="no AlpacaEval records and no MT-Bench records"):
        cal.write_calibration_outputs(
            [], *map(str, out.values()), judge="local", local_judge_model=None
        )
