"""Collect every judgment and training log of a run into the score tables the notebooks read."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

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
    from prefopt.judging.win_rates import alpaca_eval_leaderboard, per_prompt_table

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
    (the API refused the request; None otherwise)."""
    category = {q["question_id"]: q["category"] for q in read_jsonl(questions_path)}
    rows = []
    for path in paths:
        variant, seed = variant_seed(path)
        for j in read_jsonl(path):
            score = float(j["score"])
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
                    "score": score if score >= 0 else float("nan"),  # last, as before
                }
            )
    return pd.DataFrame(rows)


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
