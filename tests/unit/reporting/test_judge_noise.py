"""Judge noise in the score tables and in the paired comparisons' uncertainty (judges.repeats).

The score tables (prefopt.reporting.aggregate) gain judge-noise columns, empty and "judged once"
when every item was judged once; the hierarchical bootstrap (prefopt.reporting.artifacts)
resamples the judge's repeats of each item as well as seeds and prompts, so its interval widens
when the repeats disagree and is today's when they agree; the paired-comparison notebook says what
its interval covers.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports alpaca_eval / huggingface_hub

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import EMBEDDED_DATA, REPO
from standins import judged_annotation

from prefopt.judging import win_rates
from prefopt.reporting import aggregate
from prefopt.reporting import artifacts as art

QUESTIONS = EMBEDDED_DATA / "mt_bench" / "question.jsonl"
FIXTURES = REPO / "tests" / "fixtures" / "scores"


def _width(ci: tuple[float, float]) -> float:
    return ci[1] - ci[0]


# --------------------------------------------------------------------------- score tables


def _annotation(i: int, preferences: list | None, preference: float | None = None) -> dict:
    rec = judged_annotation(i, preference, "gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14")
    if preferences is not None:
        valid = [p for p in preferences if p is not None]
        rec["preference"] = float(np.mean(valid)) if valid else None
        rec["preferences"] = preferences
        rec["n_failed_repeats"] = sum(p is None for p in preferences)
    return rec


def _write(tmp_path: Path, variant: str, annotations: list[dict]) -> str:
    path = tmp_path / "judge" / variant / "seed0" / "annotations.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(annotations))
    return str(path)


def test_alpaca_eval_table_reports_the_spread_of_repeated_verdicts(tmp_path: Path) -> None:
    repeated = [
        _annotation(0, [2.0, 2.0, 2.0]),
        _annotation(1, [1.0, 2.0, 1.0]),  # disagree
        _annotation(2, [2.0, None, 1.0]),  # disagree, one failed repeat
        _annotation(3, [None, None, 2.0]),  # a single verdict: cannot disagree
        _annotation(4, [1.5, 1.5, 1.5]),  # identical outputs
    ]
    once = [_annotation(i, None, p) for i, p in enumerate([2.0, 1.0, None, 2.0])]
    paths = [_write(tmp_path, "dpo", repeated), _write(tmp_path, "base", once)]
    boards, per_prompt = aggregate.alpaca_eval_tables(paths, "alpaca_eval_fn", None)
    boards = boards.set_index("variant")
    assert set(win_rates.JUDGE_NOISE_KEYS) <= set(boards.columns)

    dpo = boards.loc["dpo"]
    assert (dpo["judge_repeats"], dpo["judge_noise"]) == (3, "mean of 3 repeats")
    assert dpo["n_failed_repeats"] == 3
    assert dpo["frac_items_repeats_disagree"] == pytest.approx(2 / 4)
    # each repeat's win rate alone: mean of (preference - 1) over its valid verdicts
    by_repeat = [
        (1 + 0 + 1 + 0.5) / 4 * 100,
        (1 + 1 + 0.5) / 3 * 100,
        (1 + 0 + 0 + 1 + 0.5) / 5 * 100,
    ]
    got = [float(x) for x in dpo["win_rate_by_repeat"].split()]
    assert got == pytest.approx(by_repeat, abs=1e-4)
    assert dpo["win_rate_sd_over_repeats"] == pytest.approx(np.std(by_repeat, ddof=1), rel=1e-9)
    # the win rate itself is alpaca_eval's on the mean verdicts
    means = [2.0, 4 / 3, 1.5, 2.0, 1.5]
    assert dpo["win_rate"] == pytest.approx(np.mean([m - 1 for m in means]) * 100)

    base = boards.loc["base"]
    assert (base["judge_repeats"], base["judge_noise"]) == (1, "judged once")
    for key in win_rates.JUDGE_NOISE_KEYS[2:]:
        assert pd.isna(base[key]), key

    pp = per_prompt[per_prompt["variant"] == "dpo"]
    assert json.loads(pp["preferences"].iloc[2]) == [2.0, None, 1.0]
    assert pp["preference"].iloc[1] == pytest.approx(4 / 3)
    assert per_prompt.loc[per_prompt["variant"] == "base", "preferences"].isna().all()


def _judgment(qid: int, turn: int, scores: list | None, score: float | None = None) -> dict:
    rec = {
        "question_id": qid,
        "model": "dpo-seed0",
        "judge": ["gpt-4.1-2025-04-14", "single-v1"],
        "user_prompt": "...",
        "judgment": "Rating: [[5]]",
        "score": score,
        "turn": turn,
        "tstamp": 0.0,
        "judge_model": "gpt-4.1-2025-04-14",
        "served_model": "gpt-4.1-2025-04-14",
        "judge_error": None,
    }
    if scores is not None:
        valid = [s for s in scores if s is not None]
        rec["score"] = float(np.median(valid)) if valid else -1.0
        rec["scores"] = scores
        rec["n_failed_repeats"] = sum(s is None for s in scores)
    return rec


def test_mt_bench_table_reports_within_item_and_over_repeat_spread(tmp_path: Path) -> None:
    repeated = [
        _judgment(81, 1, [3.0, 9.0, 4.0]),
        _judgment(81, 2, [7.0, 7.0, 7.0]),
        _judgment(82, 1, [None, 2.0, 6.0]),
        _judgment(82, 2, [None, None, None]),  # every repeat failed: score -1 (NaN)
    ]
    once = [_judgment(81, 1, None, 6.0), _judgment(81, 2, None, -1.0)]
    paths = []
    for variant, rows in (("dpo", repeated), ("base", once)):
        path = tmp_path / "judge" / variant / "seed0.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(path))
    table = aggregate.mt_bench_table(paths, "gpt-4.1-2025-04-14", str(QUESTIONS))
    assert list(table.columns)[-1] == "score"  # readers edit the last column
    assert set(aggregate.MT_BENCH_NOISE_KEYS) <= set(table.columns)
    dpo = table[table["variant"] == "dpo"].reset_index(drop=True)
    assert dpo["score"].tolist()[:3] == [4.0, 7.0, 4.0] and math.isnan(dpo["score"][3])
    assert (dpo["judge_repeats"] == 3).all() and (dpo["judge_noise"] == "median of 3 repeats").all()
    assert dpo["n_failed_repeats"].tolist() == [0, 0, 1, 3]
    assert json.loads(dpo["scores"][2]) == [None, 2.0, 6.0]
    within = [np.std([3, 9, 4], ddof=1), 0.0, np.std([2, 6], ddof=1), np.nan]
    np.testing.assert_allclose(dpo["score_sd_over_repeats"], within)
    # each repeat's mean over the turns it rated, then their SD
    per_repeat = [np.mean([3, 7]), np.mean([9, 7, 2]), np.mean([4, 7, 6])]
    assert dpo["mean_score_sd_over_repeats"].iloc[0] == pytest.approx(np.std(per_repeat, ddof=1))

    base = table[table["variant"] == "base"]
    assert (base["judge_noise"] == "judged once").all() and (base["judge_repeats"] == 1).all()
    assert base[list(aggregate.MT_BENCH_NOISE_KEYS[2:])].isna().all().all()

    summary = aggregate.mt_bench_judge_noise(table).set_index("variant")
    assert summary.loc["dpo", "mean_within_item_sd"] == pytest.approx(np.nanmean(within))
    assert summary.loc["dpo", "n_failed_repeats"] == 4
    assert summary.loc["dpo", "mean_score_sd_over_repeats"] == pytest.approx(
        np.std(per_repeat, ddof=1)
    )
    assert summary.loc["base", "judge_noise"] == "judged once"
    assert math.isnan(summary.loc["base", "mean_within_item_sd"])


# --------------------------------------------------------------------------- the bootstrap


def _scores(n_seeds: int, n_prompts: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice([0.0, 50.0, 100.0], size=(n_seeds, n_prompts), p=[0.45, 0.1, 0.45])


def test_agreeing_repeats_give_todays_replicates() -> None:
    mat = _scores(3, 150)
    mat[1, 7] = np.nan  # a failed judgment
    today = art.hierarchical_bootstrap(mat, 800, art.rng_for(3, "dpo"))
    agree = np.repeat(mat[:, :, None], 3, axis=2)
    again = art.hierarchical_bootstrap(agree, 800, art.rng_for(3, "dpo"))
    np.testing.assert_allclose(again, today, rtol=1e-12)
    # a third axis of length 1 is a single judgment: exactly today's
    single = art.hierarchical_bootstrap(mat[:, :, None], 800, art.rng_for(3, "dpo"))
    np.testing.assert_array_equal(single, today)
    # a failed repeat next to agreeing ones changes nothing
    agree[0, :, 1] = np.nan
    np.testing.assert_allclose(
        art.hierarchical_bootstrap(agree, 800, art.rng_for(3, "dpo")), today, rtol=1e-12
    )


def _dissent(mat: np.ndarray) -> np.ndarray:
    """Three verdicts per item, the second one reversed: the judge disagrees with itself on
    every item (means 1/3 and 2/3 of the way)."""
    return np.stack([mat, 100.0 - mat, mat], axis=2)


def test_disagreeing_repeats_widen_the_interval() -> None:
    n = 3000
    mat = _scores(2, 40, seed=4)
    noisy = _dissent(mat)
    means = np.nanmean(noisy, axis=2)
    # the seeds x prompts bootstrap of the item means cannot see the judge's noise
    blind = art.percentile_interval(art.hierarchical_bootstrap(means, n, art.rng_for(1)), 0.95)
    seeing = art.percentile_interval(art.hierarchical_bootstrap(noisy, n, art.rng_for(1)), 0.95)
    assert _width(seeing) > 1.3 * _width(blind)
    assert seeing[0] < np.nanmean(means) < seeing[1]
    # items whose means are all equal: no interval without the repeats, one with them
    flat = np.stack([np.full((2, 40), 0.0), np.full((2, 40), 100.0)], axis=2)
    assert (
        _width(
            art.percentile_interval(
                art.hierarchical_bootstrap(flat.mean(2), n, art.rng_for(1)), 0.95
            )
        )
        == 0
    )
    assert (
        _width(art.percentile_interval(art.hierarchical_bootstrap(flat, n, art.rng_for(1)), 0.95))
        > 5
    )


def test_repeat_bootstrap_of_one_item_is_the_bootstrap_of_its_mean_verdict() -> None:
    verdicts = np.array([[[0.0, 100.0, 100.0, 0.0, 100.0]]])  # one seed, one prompt
    reps = art.hierarchical_bootstrap(verdicts, 20000, art.rng_for(5))
    # the mean of 5 draws with replacement: sd = population sd / sqrt(5)
    assert art.bootstrap_se(reps) == pytest.approx(np.std(verdicts) / math.sqrt(5), rel=0.03)
    assert set(np.unique(reps)) <= {0.0, 20.0, 40.0, 60.0, 80.0, 100.0}
    failed = np.array([[[np.nan, np.nan, np.nan]]])
    assert art.hierarchical_bootstrap(failed, 50, art.rng_for(5)).size == 0


def test_minus_is_the_paired_difference() -> None:
    a, b = _scores(3, 60, seed=1), _scores(3, 60, seed=2)
    b[2, 5] = np.nan
    np.testing.assert_array_equal(
        art.hierarchical_bootstrap(a, 500, art.rng_for(7, "a", "b"), minus=b),
        art.hierarchical_bootstrap(a - b, 500, art.rng_for(7, "a", "b")),
    )
    with pytest.raises(ValueError, match="seeds x prompts"):
        art.hierarchical_bootstrap(a, 10, art.rng_for(7), minus=b[:, :50])


def _per_prompt(scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """A per-prompt table from variant -> seeds x prompts x repeats scores (win-rate points)."""
    rows = []
    for variant, t in scores.items():
        for s in range(t.shape[0]):
            for i in range(t.shape[1]):
                verdicts = [None if np.isnan(x) else x / 100 + 1 for x in t[s, i]]
                valid = [v for v in verdicts if v is not None]
                rows.append(
                    {
                        "variant": variant,
                        "seed": s,
                        "index": i,
                        "preference": float(np.mean(valid)) if valid else np.nan,
                        "preferences": json.dumps(verdicts) if t.shape[2] > 1 else None,
                    }
                )
    pp = pd.DataFrame(rows)
    pp["score"] = art.preference_score(pp["preference"])
    return pp


def test_repeat_tensor_reads_the_per_prompt_verdicts() -> None:
    t = np.stack([_scores(2, 5), _scores(2, 5, 1), _scores(2, 5, 2)], axis=2)
    t[1, 3, 2] = np.nan
    pp = _per_prompt({"dpo": t})
    got = art.repeat_tensor(pp, "dpo")
    np.testing.assert_allclose(got, t)
    assert art.judge_repeats_of(pp) == 3
    once = pp.drop(columns="preferences")
    assert art.judge_repeats_of(once) == 1
    np.testing.assert_allclose(art.repeat_tensor(once, "dpo")[:, :, 0], np.nanmean(t, axis=2))
    assert art.parse_repeats(None) is None and art.parse_repeats(float("nan")) is None
    assert art.parse_repeats("[2.0, null]")[0] == 2.0


def test_paired_comparison_includes_judge_repeats() -> None:
    a, b = _scores(3, 50, seed=11), _scores(3, 50, seed=12)
    agree = _per_prompt(
        {"a": np.repeat(a[:, :, None], 3, axis=2), "b": np.repeat(b[:, :, None], 3, axis=2)}
    )
    once = agree.drop(columns="preferences")
    row_once = art.paired_comparison(once, "a", "b", 2000, 20250811, 0.95)
    row_agree = art.paired_comparison(agree, "a", "b", 2000, 20250811, 0.95)
    # judged once: today's statistics (the notebook's bootstrap of the seeds x prompts Δ)
    today = art.percentile_interval(
        art.hierarchical_bootstrap(a - b, 2000, art.rng_for(20250811, "a", "b")), 0.95
    )
    assert (row_once["bootstrap_ci_low"], row_once["bootstrap_ci_high"]) == today
    assert row_once["judge_repeats"] == 1 and row_agree["judge_repeats"] == 3
    assert row_once["mean_diff"] == pytest.approx(np.mean(a - b))
    for key in ("bootstrap_ci_low", "bootstrap_ci_high", "mean_diff", "t_ci_low", "t_ci_high"):
        assert row_agree[key] == pytest.approx(row_once[key], rel=1e-9), key

    noisy = {"a": _dissent(a), "b": _dissent(b)}
    row_noisy = art.paired_comparison(_per_prompt(noisy), "a", "b", 2000, 20250811, 0.95)
    blind = art.percentile_interval(
        art.hierarchical_bootstrap(
            np.nanmean(noisy["a"], 2) - np.nanmean(noisy["b"], 2),
            2000,
            art.rng_for(20250811, "a", "b"),
        ),
        0.95,
    )
    got = (row_noisy["bootstrap_ci_low"], row_noisy["bootstrap_ci_high"])
    assert _width(got) > 1.3 * _width(blind)
    assert got[0] < row_noisy["mean_diff"] < got[1]


def test_win_rate_uncertainty_resamples_repeats_only_when_asked() -> None:
    t = np.repeat(_scores(3, 40, seed=5)[:, :, None], 3, axis=2)
    pp = _per_prompt({"dpo": t})
    plain = art.win_rate_uncertainty(pp, 500, 7, 0.95)
    agree = art.win_rate_uncertainty(pp, 500, 7, 0.95, judge_repeats=True)
    assert plain.loc["dpo", "n_repeats"] == 1 and agree.loc["dpo", "n_repeats"] == 3
    for col in ("win_rate", "ci_low", "ci_high", "se"):
        assert agree.loc["dpo", col] == pytest.approx(plain.loc["dpo", col], rel=1e-9)
    t[..., 1] = 100.0 - t[..., 1]
    noisy = _per_prompt({"dpo": t})
    wide = art.win_rate_uncertainty(noisy, 500, 7, 0.95, judge_repeats=True).loc["dpo"]
    narrow = art.win_rate_uncertainty(noisy, 500, 7, 0.95).loc["dpo"]
    assert wide["win_rate"] == pytest.approx(narrow["win_rate"])
    assert wide["ci_high"] - wide["ci_low"] > narrow["ci_high"] - narrow["ci_low"]


def test_notes_say_what_the_interval_covers() -> None:
    once = art.bootstrap_note(2000, 7, [3, 3], 0.95)
    assert once == art.bootstrap_note(2000, 7, [3, 3], 0.95, n_repeats=1)
    assert "seeds and prompts (one prompt draw" in once and "judge repeats" not in once
    thrice = art.bootstrap_note(2000, 7, [3, 3], 0.95, n_repeats=[1, 3])
    assert thrice.startswith("95 % hierarchical bootstrap CI: seeds, prompts and judge repeats")
    assert "3 verdicts drawn again with replacement" in thrice
    assert "Judge noise is not included" in art.judge_noise_note(1)
    assert "no repeated judgments in this run" in art.judge_noise_note(1)
    assert "seeds and prompts only" in art.judge_noise_note(1)
    many = art.judge_noise_note(3)
    assert "seeds, prompts and judge repeats" in many and "judged 3 times" in many
    assert "not included" not in many


# --------------------------------------------------------------------------- the notebook


def _fixture_with_repeats(tmp_path: Path, disagree: bool) -> Path:
    """The fixtures with every prompt judged three times: the same verdict three times, or
    with the second verdict of every judged item reversed."""
    scores = tmp_path / "scores"
    shutil.copytree(FIXTURES, scores)
    pp = pd.read_csv(scores / "alpaca_eval_per_prompt.csv")
    lists, means = [], []
    for p in pd.to_numeric(pp["preference"], errors="coerce"):
        if np.isnan(p):
            verdicts = [None, None, None]
        else:
            verdicts = [p, 3.0 - p if disagree else p, p]
        valid = [v for v in verdicts if v is not None]
        lists.append(json.dumps(verdicts))
        means.append(float(np.mean(valid)) if valid else np.nan)
    pp["preference"] = means
    pp["preferences"] = lists
    pp.to_csv(scores / "alpaca_eval_per_prompt.csv", index=False)
    return scores


def test_paired_comparison_notebook_with_repeats(tmp_path: Path) -> None:
    pytest.importorskip("papermill")
    from test_notebooks import run_notebook

    def table(name: str, scores: Path = FIXTURES) -> tuple[pd.DataFrame, str]:
        out = run_notebook("paired_comparisons", tmp_path / name, scores)
        return pd.read_csv(out["out_csv"]).set_index("comparison"), out["out_md"].read_text()

    t_once, md_once = table("once")
    t_agree, _ = table("agree", _fixture_with_repeats(tmp_path / "a", False))
    noisy = _fixture_with_repeats(tmp_path / "n", True)
    t_noisy, md = table("noisy", noisy)
    # the same mean verdicts, as if each had been a single judgment
    pp = pd.read_csv(noisy / "alpaca_eval_per_prompt.csv")
    pp.drop(columns="preferences").to_csv(noisy / "alpaca_eval_per_prompt.csv", index=False)
    t_blind, _ = table("blind", noisy)

    run = t_once["status"] == "run"
    assert (t_once.loc[run, "judge_repeats"] == 1).all()
    assert (t_agree.loc[run, "judge_repeats"] == 3).all()
    assert (t_blind.loc[run, "judge_repeats"] == 1).all()
    cols = ["mean_diff", "bootstrap_ci_low", "bootstrap_ci_high"]
    np.testing.assert_allclose(t_agree.loc[run, cols], t_once.loc[run, cols], rtol=1e-9)
    np.testing.assert_allclose(t_noisy.loc[run, "mean_diff"], t_blind.loc[run, "mean_diff"])

    def widths(t: pd.DataFrame) -> pd.Series:
        return t.loc[run, "bootstrap_ci_high"] - t.loc[run, "bootstrap_ci_low"]

    assert (widths(t_noisy) > 1.2 * widths(t_blind)).all()

    assert "Judge noise is not included" in md_once and "bootstrap CI (seeds, prompts)" in md_once
    assert "bootstrap CI (seeds, prompts, judge repeats)" in md
    assert "seeds, prompts and judge repeats" in md and "judged 3 times" in md
    assert "Judge noise is not included" not in md


def test_table1_and_paper_comparison_include_judge_repeats(tmp_path: Path) -> None:
    """Table 1's interval and the paper comparison's SE resample each item's repeated verdicts
    too: today's numbers when the repeats agree, wider when they disagree, and the notes say so."""
    pytest.importorskip("papermill")
    from test_notebooks import run_notebook

    def run(name: str, scores: Path) -> tuple[pd.DataFrame, str, pd.DataFrame, str]:
        t1 = run_notebook("table1_alpaca_eval", tmp_path / name / "t1", scores)
        pvr = run_notebook("paper_vs_reproduction", tmp_path / name / "pvr", scores)
        return (
            pd.read_csv(t1["out_csv"]).set_index("variant"),
            t1["out_md"].read_text(),
            pd.read_csv(pvr["alpaca_csv"]).set_index("variant"),
            pvr["alpaca_md"].read_text(),
        )

    once, md_once, cmp_once, _ = run("once", FIXTURES)
    agree, _, cmp_agree, _ = run("agree", _fixture_with_repeats(tmp_path / "a", False))
    noisy = _fixture_with_repeats(tmp_path / "n", True)
    t_noisy, md, cmp_noisy, cmp_md = run("noisy", noisy)
    pp = pd.read_csv(noisy / "alpaca_eval_per_prompt.csv")
    pp.drop(columns="preferences").to_csv(noisy / "alpaca_eval_per_prompt.csv", index=False)
    blind, _, cmp_blind, _ = run("blind", noisy)

    ran = once["win_rate_ci_low"].notna()
    cols = ["win_rate_ci_low", "win_rate_ci_high"]
    np.testing.assert_allclose(agree.loc[ran, cols], once.loc[ran, cols], rtol=1e-9)
    width = lambda t: t.loc[ran, "win_rate_ci_high"] - t.loc[ran, "win_rate_ci_low"]  # noqa: E731
    assert (width(t_noisy) > 1.2 * width(blind)).all()
    se = {name: t["ours_win_rate_se"] for name, t in [("once", cmp_once), ("agree", cmp_agree),
          ("noisy", cmp_noisy), ("blind", cmp_blind)]}  # fmt: skip
    has = se["once"].notna()
    np.testing.assert_allclose(se["agree"][has], se["once"][has], rtol=1e-9)
    assert (se["noisy"][has] > 1.2 * se["blind"][has]).all()
    assert "judge repeats" in md and "judge repeats" in cmp_md
    assert "judge repeats" not in md_once
