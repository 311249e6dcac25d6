"""Score tables say which model judged, which model the API served, and how many annotations
are missing and why (prefopt.reporting.aggregate over judgment files as the judge rules write
them)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports alpaca_eval / huggingface_hub

import json
from pathlib import Path

import pandas as pd
from helpers import EMBEDDED_DATA
from standins import judged_annotation

from prefopt.judging import mt_bench
from prefopt.reporting import aggregate

QUESTIONS = EMBEDDED_DATA / "mt_bench" / "question.jsonl"


def _annotation(i: int, preference: float | None, error: str | None = None) -> dict:
    served = None if preference is None else "gpt-4-1106-preview"
    return judged_annotation(i, preference, "gpt-4-1106-preview", served, error)


def test_alpaca_eval_scores_count_missing_annotations(tmp_path: Path) -> None:
    annotations = [
        _annotation(0, 2.0),
        _annotation(1, 1.0),
        _annotation(2, None, "HTTP 400 content_filter"),
        _annotation(3, 2.0),
        _annotation(4, None),  # answered, but no readable ranking
        _annotation(5, 1.5),
    ]
    path = tmp_path / "alpaca_eval_gpt4_turbo_fn" / "dpo" / "seed0" / "annotations.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(annotations))
    boards, per_prompt = aggregate.alpaca_eval_tables(
        [str(path)], "alpaca_eval_gpt4_turbo_fn", None
    )
    row = boards.iloc[0]
    assert (row["variant"], row["seed"]) == ("dpo", 0)
    assert row["n_total"] == 4 and row["n_missing"] == 2  # alpaca_eval drops the nulls
    assert row["missing_reasons"] == "HTTP 400 content_filter: 1; no readable ranking: 1"
    assert row["judge_model"] == row["served_model"] == "gpt-4-1106-preview"
    errors = per_prompt["judge_error"]
    assert errors.isna().tolist() == [True, True, False, True, True, True]
    assert errors[2] == "HTTP 400 content_filter"
    complete = [_annotation(i, 2.0) for i in range(3)]
    path.write_text(json.dumps(complete))
    boards, _ = aggregate.alpaca_eval_tables([str(path)], "alpaca_eval_gpt4_turbo_fn", None)
    assert boards.iloc[0]["n_missing"] == 0 and pd.isna(boards.iloc[0]["missing_reasons"])


def _judgment(qid: int, turn: int, score: float, **kw) -> dict:
    rec = mt_bench.judgment_record(
        question_id=qid,
        model="dpo-seed1",
        judge_model=kw.pop("judge_model", "gpt-4-0613"),
        prompt_name="single-v1",
        user_prompt="u",
        judgment=f"Rating: [[{score}]]",
        score=score,
        turn=turn,
        tstamp=0.0,
        **kw,
    )
    return rec


def test_mt_bench_scores_carry_judge_served_model_and_error(tmp_path: Path) -> None:
    rows = [
        _judgment(81, 1, 7.0, served_model="gpt-4-0613"),
        _judgment(81, 2, -1.0, judge_error="HTTP 400 content_filter"),
    ]
    path = tmp_path / "gpt-4-0613" / "dpo" / "seed1.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = aggregate.mt_bench_table([str(path)], "gpt-4-0613", str(QUESTIONS))
    assert table["judge_model"].tolist() == ["gpt-4-0613"] * 2
    assert table["served_model"][0] == "gpt-4-0613" and pd.isna(table["served_model"][1])
    assert pd.isna(table["judge_error"][0]) and table["judge_error"][1] == "HTTP 400 content_filter"
    assert table["score"].iloc[0] == 7.0 and pd.isna(table["score"].iloc[1])


def test_mt_bench_scores_read_older_judgment_files(tmp_path: Path) -> None:
    """Files written before the provenance keys: the judge model is FastChat's judge[0]."""
    old = {k: v for k, v in _judgment(81, 1, 5.0).items() if k not in mt_bench.PROVENANCE_KEYS}
    old["judge"] = ["local", "single-v1"]
    path = tmp_path / "local" / "base" / "seed0.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old) + "\n")
    table = aggregate.mt_bench_table([str(path)], "local", str(QUESTIONS))
    assert table["judge_model"].tolist() == ["local"]
    assert table["served_model"].isna().all() and table["judge_error"].isna().all()
