"""Collect every judgment and training log of a run into the score tables the notebooks read."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from prefopt.data import read_jsonl

_PATH_KEYS = re.compile(r"/(?P<variant>[a-z][a-z0-9_]*)/seed(?P<seed>\d+)(?:/|\.)")


def variant_seed(path: str | Path) -> tuple[str, int]:
    """Variant and seed from a results path (…/{variant}/seed{seed}/… or …/seed{seed}.jsonl)."""
    matches = list(_PATH_KEYS.finditer(str(path)))
    match = matches[-1] if matches else None
    if match is None:
        raise ValueError(f"cannot read variant/seed from {path}")
    return match["variant"], int(match["seed"])


def alpaca_eval_tables(
    paths: list[str], judge: str, lc_assets_dir: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from prefopt.metrics import alpaca_eval_leaderboard, per_prompt_table

    rows, per_prompt = [], []
    for path in paths:
        variant, seed = variant_seed(path)
        annotations = json.loads(Path(path).read_text())
        board = alpaca_eval_leaderboard(annotations, lc_assets_dir=lc_assets_dir)
        rows.append({"variant": variant, "seed": seed, "judge": judge, **board})
        table = per_prompt_table(annotations)
        table.insert(0, "judge", judge)
        table.insert(0, "seed", seed)
        table.insert(0, "variant", variant)
        per_prompt.append(table)
    return pd.DataFrame(rows), pd.concat(per_prompt, ignore_index=True)


def mt_bench_table(paths: list[str], judge: str, questions_path: str) -> pd.DataFrame:
    """One row per (variant, seed, question, turn); invalid scores (< 0) are kept as NaN."""
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
                    "score": score if score >= 0 else float("nan"),
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
