"""Collect every judgment and training log of a run into the score tables the notebooks read."""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefopt.data.prepare import read_jsonl
from prefopt.runtime import read_json

_PATH_KEYS = re.compile(r"/(?P<variant>[a-z][a-z0-9_]*)/seed(?P<seed>\d+)(?:/|\.)")


def variant_seed(path: str | Path) -> tuple[str, int]:
    """Variant and seed from a results path (…/{variant}/seed{seed}/… or …/seed{seed}.jsonl)."""
    matches = list(_PATH_KEYS.finditer(str(path)))
    match = matches[-1] if matches else None
    if match is None:
        raise ValueError(f"cannot read variant/seed from {path}")
    return match["variant"], int(match["seed"])


def _models(values: Any) -> str | None:
    """The distinct model names of a run's judgments, sorted, ';'-joined (None when none)."""
    names = sorted({str(v) for v in values if v is not None and not pd.isna(v)})
    return ";".join(names) or None


def judge_provenance(annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """Which model judged one run and how many annotations are missing, and why.

    ``n_missing`` counts null preferences (dropped from the win rate and ``n_total`` by
    alpaca_eval): requests the API refused (``judge_error``) and answers without a readable
    ranking. ``missing_reasons`` counts them by kind, e.g. ``HTTP 400 content_filter: 1``.
    """
    missing = [a for a in annotations if a.get("preference") is None or pd.isna(a["preference"])]
    reasons = Counter(a.get("judge_error") or "no readable ranking" for a in missing)
    return {
        "judge_model": _models(a.get("judge_model") for a in annotations),
        "served_model": _models(a.get("served_model") for a in annotations),
        "n_missing": len(missing),
        "missing_reasons": "; ".join(f"{k}: {n}" for k, n in sorted(reasons.items())) or None,
    }


def alpaca_eval_tables(
    paths: list[str], judge: str, lc_assets_dir: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The AlpacaEval score table (one row per run: alpaca_eval's leaderboard columns, the judge's
    provenance and the judge-noise columns of ``prefopt.judging.win_rates.judge_noise``: empty
    and "judged once" unless ``judges.repeats`` > 1) and the per-prompt table."""
    from prefopt.judging.win_rates import alpaca_eval_leaderboard, judge_noise, per_prompt_table

    rows, per_prompt = [], []
    for path in paths:
        variant, seed = variant_seed(path)
        annotations = read_json(path)
        board = alpaca_eval_leaderboard(annotations, lc_assets_dir=lc_assets_dir)
        rows.append(
            {
                "variant": variant,
                "seed": seed,
                "judge": judge,
                **board,
                **judge_provenance(annotations),
                **judge_noise(annotations),
            }
        )
        table = per_prompt_table(annotations)
        table.insert(0, "judge", judge)
        table.insert(0, "seed", seed)
        table.insert(0, "variant", variant)
        table["judge_error"] = [a.get("judge_error") for a in annotations]
        per_prompt.append(table)
    return pd.DataFrame(rows), pd.concat(per_prompt, ignore_index=True)


def mt_bench_table(paths: list[str], judge: str, questions_path: str) -> pd.DataFrame:
    """One row per (variant, seed, question, turn); invalid scores (< 0) are kept as NaN.

    ``judge_model`` is the model asked to judge (FastChat's ``judge[0]`` in older files),
    ``served_model`` the model the API says answered, ``judge_error`` why a judgment is missing
    (the API refused the request; None otherwise). The judge-noise columns
    (:data:`MT_BENCH_NOISE_KEYS`) come before ``score``, which stays last: ``judge_repeats`` (k,
    ``judges.repeats``), ``judge_noise`` ("judged once" or "median of k repeats"), and with k > 1
    ``scores`` (the k ratings as a JSON list, null for a failed repeat), ``n_failed_repeats``,
    ``score_sd_over_repeats`` (SD of the turn's valid ratings: the within-item spread) and
    ``mean_score_sd_over_repeats`` (per run: the SD over repeats of the run's mean score, each
    repeat's mean taken over the turns it rated); empty when judged once."""
    category = {q["question_id"]: q["category"] for q in read_jsonl(questions_path)}
    frames = []
    for path in paths:
        variant, seed = variant_seed(path)
        rows, repeats = [], []
        for j in read_jsonl(path):
            score = float(j["score"])
            ratings = j.get("scores")
            ratings = [float(score)] if not isinstance(ratings, list) else ratings
            repeats.append([np.nan if x is None or float(x) < 0 else float(x) for x in ratings])
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "judge": judge,
                    "question_id": j["question_id"],
                    "category": category[j["question_id"]],
                    "turn": j["turn"],
                    "judge_model": j.get("judge_model") or j["judge"][0],
                    "served_model": j.get("served_model"),
                    "judge_error": j.get("judge_error"),
                    "score": score if score >= 0 else float("nan"),
                }
            )
        frame = pd.DataFrame(rows, columns=MT_BENCH_BASE_COLUMNS)
        noise = mt_bench_noise(repeats)
        frames.append(pd.concat([frame.drop(columns="score"), noise, frame["score"]], axis=1))
    if not frames:
        return pd.DataFrame(
            columns=[*MT_BENCH_BASE_COLUMNS[:-1], *MT_BENCH_NOISE_KEYS, MT_BENCH_BASE_COLUMNS[-1]]
        )
    return pd.concat(frames, ignore_index=True)


#: The columns of mt_bench.csv before the judge-noise ones were added (``score`` last).
MT_BENCH_BASE_COLUMNS = (
    "variant",
    "seed",
    "judge",
    "question_id",
    "category",
    "turn",
    "judge_model",
    "served_model",
    "judge_error",
    "score",
)
#: The judge-noise columns of mt_bench.csv (:func:`mt_bench_noise`), before ``score``.
MT_BENCH_NOISE_KEYS = (
    "judge_repeats",
    "judge_noise",
    "scores",
    "n_failed_repeats",
    "score_sd_over_repeats",
    "mean_score_sd_over_repeats",
)


def mt_bench_noise(repeats: list[list[float]]) -> pd.DataFrame:
    """The judge-noise columns (:data:`MT_BENCH_NOISE_KEYS`) of one run's turns, from each
    turn's ratings (NaN: a failed repeat): see :func:`mt_bench_table`."""
    from prefopt.judging.win_rates import JUDGED_ONCE

    k = max((len(r) for r in repeats), default=1)
    n = len(repeats)
    if k == 1:
        return pd.DataFrame(
            {"judge_repeats": [1] * n, "judge_noise": [JUDGED_ONCE] * n, "scores": [None] * n}
            | {key: [np.nan] * n for key in MT_BENCH_NOISE_KEYS[3:]}
        )
    mat = np.full((n, k), np.nan)
    for i, ratings in enumerate(repeats):
        mat[i, : len(ratings)] = ratings
    valid = np.isfinite(mat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # turns / repeats without a rating
        within = np.where(valid.sum(axis=1) >= 2, np.nanstd(mat, axis=1, ddof=1), np.nan)
        per_repeat = np.nanmean(mat, axis=0)
    per_repeat = per_repeat[np.isfinite(per_repeat)]
    between = float(np.std(per_repeat, ddof=1)) if per_repeat.size >= 2 else np.nan
    return pd.DataFrame(
        {
            "judge_repeats": [k] * n,
            "judge_noise": [f"median of {k} repeats"] * n,
            "scores": [json.dumps([None if np.isnan(x) else x for x in row]) for row in mat],
            "n_failed_repeats": (~valid).sum(axis=1),
            "score_sd_over_repeats": within,
            "mean_score_sd_over_repeats": [between] * n,
        }
    )


def mt_bench_judge_noise(table: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, seed) of an mt_bench.csv table: ``judge_repeats``, ``judge_noise``,
    ``n_failed_repeats``, ``mean_within_item_sd`` (mean over turns of ``score_sd_over_repeats``)
    and ``mean_score_sd_over_repeats``; NaN where judged once."""
    cols = ["judge_repeats", "n_failed_repeats", "score_sd_over_repeats"]
    df = table.copy()
    df[cols + ["mean_score_sd_over_repeats"]] = df[cols + ["mean_score_sd_over_repeats"]].apply(
        pd.to_numeric, errors="coerce"
    )
    out = df.groupby(["variant", "seed"], sort=False).agg(
        judge_repeats=("judge_repeats", "max"),
        judge_noise=("judge_noise", "first"),
        n_failed_repeats=("n_failed_repeats", lambda x: x.sum(min_count=1)),
        mean_within_item_sd=("score_sd_over_repeats", "mean"),
        mean_score_sd_over_repeats=("mean_score_sd_over_repeats", "first"),
    )
    return out.reset_index()


def diagnostics_table(paths: list[str]) -> pd.DataFrame:
    frames = []
    for path in paths:
        variant, seed = variant_seed(path)
        df = pd.read_csv(path)
        df.insert(0, "seed", seed)
        df.insert(0, "variant", variant)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["variant", "seed"])
    return pd.concat(frames, ignore_index=True)


def variants_table(variants: dict[str, dict[str, Any]], run_variants: list[str]) -> pd.DataFrame:
    """Labels, groups and hyperparameters in the run's (= the paper's) order."""
    rows = []
    for order, name in enumerate(run_variants):
        spec = variants[name]
        rows.append(
            {
                "variant": name,
                "label": spec["label"],
                "group": spec["group"],
                "order": order,
                "loss": spec["loss"] or "",
                **{k: spec.get(k) for k in ("beta", "margin", "delta", "label_smoothing")},
            }
        )
    return pd.DataFrame(rows)
