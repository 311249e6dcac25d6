"""Held-out preference accuracy and reward margin: a generation-free signal per variant x seed.

For every held-out pair (x, y_w, y_l) the implicit reward margin, without β, is

    Δ = (log π_θ(y_w|x) − log π_ref(y_w|x)) − (log π_θ(y_l|x) − log π_ref(y_l|x))

with summed sequence log-probs computed exactly as training computes them
(`prefopt.training.trainer.pair_logps`: the reference cache's code path, tokenisation, batching and
numerics), π_ref the base model (the reference of every trained variant). Per variant x seed:

* **accuracy** — the mean over evaluated pairs of 1 if Δ > 0, ½ if Δ = 0, 0 if Δ < 0. The ½
  for an exact tie is the half-credit convention AlpacaEval uses for draws. It matters for one
  row only: the `base` variant *is* the reference, so its Δ is 0 for every pair by definition
  (its policy log-probs are the reference's, not a second forward), and its accuracy is 0.5
  with a zero-width interval: chance level by convention, not a measurement; the rows say so
  in `note`. A trained policy's Δ is a difference of float sums and is never exactly 0 in
  practice.
* **mean_margin** — the mean Δ over evaluated pairs, in nats.
* **mean_chosen_shift / mean_rejected_shift** — the mean of log π_θ(y|x) − log π_ref(y|x) over
  evaluated pairs for the chosen and for the rejected response, in nats: Δ is their difference.
  They say *how* a loss moved the margin. A sigmoid loss keeps pushing every pair and drags both
  likelihoods down together ("likelihood displacement"); a hinge stops pushing a pair once it is
  past the margin, so its log-probs move less. In the embedded run this is where the losses
  separate beyond their seed spread (`separation`), while the margins themselves overlap.
* **evaluated pairs** — pairs whose preference is defined: pairs with
  ``score_chosen == score_rejected`` (about a tenth of UltraFeedback; their chosen/rejected
  labels are arbitrary) are kept in the per-pair files but excluded from both statistics
  (counted in `n_ties`).
* **95 % CI** — percentile bootstrap over evaluated pairs (`bootstrap_ci`): resampled indices
  from a fixed seed, the same for accuracy and margin, for every job and for every seed of a
  variant (the seeds scored the same pairs), so intervals do not depend on which variants ran.

Held-out pairs must share no prompt with the training pairs (`select_heldout_pairs` fails,
naming the config keys, when they do). Pure functions, numpy and pandas only (the notebooks'
environment has no torch); `heldout_scores` imports the torch path lazily.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prefopt.data.prepare import check_pairs, read_jsonl

#: The interval level of every held-out CI.
CI_LEVEL = 0.95
#: Why the base variant's row is 0.5 / 0 with zero-width intervals.
REFERENCE_NOTE = (
    "policy is the reference (no training): margin 0 for every pair by definition; "
    "accuracy 0.5 is the half-credit convention for margin 0, not a measurement"
)
#: Columns of a per-job score file (one row per held-out pair).
PAIR_COLUMNS = [
    "variant",
    "seed",
    "pair_id",
    "source_index",
    "score_chosen",
    "score_rejected",
    "score_tie",
    "policy_is_reference",
    "chosen_logps",
    "rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "margin",
]
#: Columns of results/scores/heldout_preference.csv (one row per variant x seed).
SUMMARY_COLUMNS = [
    "variant",
    "seed",
    "heldout",
    "n_pairs",
    "n_ties",
    "n_evaluated",
    "n_zero_margin",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "mean_margin",
    "mean_margin_ci_low",
    "mean_margin_ci_high",
    "mean_chosen_shift",
    "mean_rejected_shift",
    "note",
]
#: The per-seed statistics `separation` compares between variants, with their labels.
SEPARATION_METRICS = {
    "accuracy": "held-out accuracy",
    "mean_margin": "mean reward margin (nats)",
    "mean_chosen_shift": "mean log-prob shift, chosen (nats)",
    "mean_rejected_shift": "mean log-prob shift, rejected (nats)",
}
#: Columns of `separation`'s table (one row per variant x metric).
SEPARATION_COLUMNS = [
    "variant",
    "baseline",
    "metric",
    "n_seeds",
    "variant_mean",
    "variant_min",
    "variant_max",
    "baseline_mean",
    "baseline_min",
    "baseline_max",
    "difference",
    "separated",
    "n_paired",
    "paired_mean",
    "paired_sd",
    "paired_positive",
]


class HeldoutOverlapError(ValueError):
    """Held-out pairs that share a prompt with the training pairs (the message names the keys)."""


def prompt_key(prompt: str) -> str:
    """A prompt compared for overlap: whitespace runs collapsed, ends stripped (case kept)."""
    return " ".join(str(prompt).split())


def check_disjoint(
    heldout: Sequence[dict[str, Any]], train: Sequence[dict[str, Any]], where: str = ""
) -> None:
    """Raise `HeldoutOverlapError` if any held-out pair's prompt is a training pair's prompt."""
    train_rows = {prompt_key(r["prompt"]): r for r in train}
    shared = [r for r in heldout if prompt_key(r["prompt"]) in train_rows]
    if not shared:
        return
    first = shared[0]
    other = train_rows[prompt_key(first["prompt"])]
    raise HeldoutOverlapError(
        f"config error at data.heldout: {len(shared)} of {len(heldout)} held-out pairs share "
        f"their prompt with a training pair{where} (first: held-out source row "
        f"{first.get('source_index')} and training source row {other.get('source_index')}, "
        f"prompt {first['prompt'][:80]!r}). Held-out pairs must be disjoint from the training "
        "prompts: choose another data.heldout.split, or move data.heldout.first_row past the "
        "rows training reads (data.train.max_pairs)"
    )


def select_heldout_pairs(
    rows: list[dict[str, Any]],
    train_pairs: Sequence[dict[str, Any]],
    heldout: dict[str, Any],
    where: str = "",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The held-out pairs of a source split (`data.heldout`: `first_row`, `max_pairs`),
    checked like the training pairs (`prefopt.data.prepare.check_pairs`) and disjoint from them.

    Returns the pairs (the training pairs' schema) and a report of what was read and kept.
    """
    first_row = int(heldout.get("first_row") or 0)
    if first_row >= len(rows):
        raise ValueError(
            f"config error at data.heldout.first_row: {first_row} is past the last row of the "
            f"held-out source ({len(rows)} rows)"
        )
    kept, report = check_pairs(rows, max_pairs=heldout.get("max_pairs"), first_row=first_row)
    check_disjoint(kept, train_pairs, where)
    ties = sum(is_tie(r["score_chosen"], r["score_rejected"]) for r in kept)
    return kept, {
        "heldout": heldout.get("name"),
        "split": heldout.get("split"),
        "first_row": first_row,
        **report,
        "score_ties": ties,
        "training_pairs_checked": len(train_pairs),
        "prompts_shared_with_training": 0,
    }


def is_tie(score_chosen: Any, score_rejected: Any) -> bool:
    """A pair whose two responses were rated the same (its preference label is arbitrary)."""
    try:
        return float(score_chosen) == float(score_rejected)
    except (TypeError, ValueError):
        return False  # no scores (a source without ratings): every pair counts


def preference_margins(
    pairs: Sequence[dict[str, Any]],
    reference: Iterable[dict[str, Any]],
    policy: Iterable[dict[str, Any]] | None,
) -> pd.DataFrame:
    """One row per held-out pair: both models' summed log-probs and the margin Δ.

    `reference` rows are the reference cache's (`pair_id`, `ref_chosen_logps`,
    `ref_rejected_logps`); `policy` rows have `pair_id`, `chosen_logps`, `rejected_logps`, or
    `policy` is None when the policy *is* the reference (the base variant): its log-probs are
    the reference's and Δ is exactly 0.
    """
    ref = {r["pair_id"]: r for r in reference}
    pol = None if policy is None else {r["pair_id"]: r for r in policy}
    rows = []
    for pair in pairs:
        pid = pair["pair_id"]
        if pid not in ref or (pol is not None and pid not in pol):
            side = "reference cache" if pid not in ref else "policy's log-probs"
            raise ValueError(f"held-out pair {pid} has no entry in the {side}")
        rc, rr = float(ref[pid]["ref_chosen_logps"]), float(ref[pid]["ref_rejected_logps"])
        if pol is None:
            c, r = rc, rr
        else:
            c, r = float(pol[pid]["chosen_logps"]), float(pol[pid]["rejected_logps"])
        margin = (c - rc) - (r - rr)
        if not math.isfinite(margin):
            raise ValueError(
                f"held-out pair {pid}: non-finite margin {margin} (log-probs {c}, {r})"
            )
        rows.append(
            {
                "pair_id": pid,
                "source_index": pair.get("source_index"),
                "score_chosen": pair.get("score_chosen"),
                "score_rejected": pair.get("score_rejected"),
                "score_tie": is_tie(pair.get("score_chosen"), pair.get("score_rejected")),
                "policy_is_reference": pol is None,
                "chosen_logps": c,
                "rejected_logps": r,
                "ref_chosen_logps": rc,
                "ref_rejected_logps": rr,
                "margin": margin,
            }
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS[2:])


def pair_correct(margins: Any) -> np.ndarray:
    """1 where Δ > 0, ½ where Δ = 0, 0 where Δ < 0 (the per-pair accuracy)."""
    m = np.asarray(margins, dtype=float)
    return np.where(m > 0, 1.0, np.where(m == 0, 0.5, 0.0))


def bootstrap_ci(
    values: Any, n_bootstrap: int, seed: int, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile CI of the mean over rows (seeds) of the mean over columns (pairs).

    `values` is pairs (1-D) or seeds x pairs; pairs are resampled with the same indices for
    every seed, from ``numpy.random.default_rng(seed)`` (the same draws for every call with the
    same shape). (nan, nan) without pairs or resamples.
    """
    mat = np.atleast_2d(np.asarray(values, dtype=float))
    n_pairs = mat.shape[1] if mat.size else 0
    if n_pairs == 0 or n_bootstrap < 1:
        return math.nan, math.nan
    idx = np.random.default_rng(int(seed)).integers(0, n_pairs, size=(int(n_bootstrap), n_pairs))
    stat = mat[:, idx].mean(axis=2).mean(axis=0)
    lo, hi = np.quantile(stat, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def preference_summary(
    margins: Any,
    ties: Any,
    n_bootstrap: int,
    seed: int,
    level: float = CI_LEVEL,
    chosen_shift: Any = None,
    rejected_shift: Any = None,
) -> dict[str, Any]:
    """Accuracy and mean margin of one variant x seed over its evaluated (non-tie) pairs, each
    with its bootstrap CI (`bootstrap_ci`, one set of resampled pairs for both), and the mean
    chosen/rejected log-prob shifts over the same pairs (NaN when not given)."""
    m = np.asarray(margins, dtype=float)
    tie = np.asarray(ties, dtype=bool)
    if m.shape != tie.shape:
        raise ValueError(f"margins {m.shape} and ties {tie.shape} differ in shape")
    used = m[~tie]
    correct = pair_correct(used)
    shifts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no evaluated pairs: NaN means
        acc, margin = float(np.mean(correct)), float(np.mean(used))
        for side, values in (("chosen", chosen_shift), ("rejected", rejected_shift)):
            v = np.full(m.shape, np.nan) if values is None else np.asarray(values, dtype=float)
            if v.shape != m.shape:
                raise ValueError(f"{side} shifts {v.shape} and margins {m.shape} differ in shape")
            shifts[f"mean_{side}_shift"] = float(np.mean(v[~tie]))
    acc_lo, acc_hi = bootstrap_ci(correct, n_bootstrap, seed, level)
    m_lo, m_hi = bootstrap_ci(used, n_bootstrap, seed, level)
    return {
        "n_pairs": int(m.size),
        "n_ties": int(tie.sum()),
        "n_evaluated": int(used.size),
        "n_zero_margin": int((used == 0).sum()),
        "accuracy": acc,
        "accuracy_ci_low": acc_lo,
        "accuracy_ci_high": acc_hi,
        "mean_margin": margin,
        "mean_margin_ci_low": m_lo,
        "mean_margin_ci_high": m_hi,
        **shifts,
    }


def log_prob_shifts(per_pair: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per pair: log π_θ − log π_ref of the chosen and of the rejected response (nats)."""
    return (
        per_pair["chosen_logps"] - per_pair["ref_chosen_logps"],
        per_pair["rejected_logps"] - per_pair["ref_rejected_logps"],
    )


def _note(group: pd.DataFrame) -> str:
    return REFERENCE_NOTE if bool(group["policy_is_reference"].all()) else ""


def summary_table(
    per_pair: pd.DataFrame, heldout: str, n_bootstrap: int, seed: int, level: float = CI_LEVEL
) -> pd.DataFrame:
    """results/scores/heldout_preference.csv: one row per variant x seed (`SUMMARY_COLUMNS`)."""
    rows = []
    for (variant, run_seed), group in per_pair.groupby(["variant", "seed"], sort=False):
        chosen, rejected = log_prob_shifts(group)
        stats = preference_summary(
            group["margin"], group["score_tie"], n_bootstrap, seed, level, chosen, rejected
        )
        rows.append(
            {
                "variant": variant,
                "seed": run_seed,
                "heldout": heldout,
                **stats,
                "note": _note(group),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _sd(values: np.ndarray) -> float:
    """The sample sd over seeds (NaN for a single seed)."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def table_over_seeds(
    per_pair: pd.DataFrame, n_bootstrap: int, seed: int, level: float = CI_LEVEL
) -> pd.DataFrame:
    """One row per variant, over its seeds (for Table 1): the mean and sd over seeds of the
    accuracy, the mean margin and the mean chosen/rejected log-prob shifts, and a bootstrap CI
    over pairs of the mean over seeds for the first two (every seed resampled with the same pair
    indices: they scored the same pairs).

    Reads results/scores/heldout_preference_per_pair.csv (or the per-job files concatenated);
    variants keep their order of first appearance.
    """
    rows = []
    for variant, group in per_pair.groupby("variant", sort=False):
        group = group[~group["score_tie"].astype(bool)]
        table = group.pivot(index="seed", columns="pair_id", values="margin")
        if table.isna().any().any():
            raise ValueError(f"held-out variant {variant}: its seeds did not score the same pairs")
        margins = table.to_numpy(dtype=float)
        correct = pair_correct(margins)
        acc_seed, margin_seed = correct.mean(axis=1), margins.mean(axis=1)
        chosen, rejected = log_prob_shifts(group)
        shift_seed = {
            side: values.groupby(group["seed"]).mean().reindex(table.index).to_numpy(float)
            for side, values in (("chosen", chosen), ("rejected", rejected))
        }
        acc_lo, acc_hi = bootstrap_ci(correct, n_bootstrap, seed, level)
        m_lo, m_hi = bootstrap_ci(margins, n_bootstrap, seed, level)
        rows.append(
            {
                "variant": variant,
                "n_seeds": len(table),
                "n_evaluated": table.shape[1],
                "accuracy_mean": float(acc_seed.mean()) if len(table) else math.nan,
                "accuracy_sd": _sd(acc_seed),
                "accuracy_ci_low": acc_lo,
                "accuracy_ci_high": acc_hi,
                "mean_margin_mean": float(margin_seed.mean()) if len(table) else math.nan,
                "mean_margin_sd": _sd(margin_seed),
                "mean_margin_ci_low": m_lo,
                "mean_margin_ci_high": m_hi,
                **{
                    f"mean_{side}_shift_{stat}": fn(values) if len(table) else math.nan
                    for side, values in shift_seed.items()
                    for stat, fn in (("mean", lambda v: float(v.mean())), ("sd", _sd))
                },
                "note": _note(group) if len(group) else "",
            }
        )
    return pd.DataFrame(rows)


def separation(
    summary: pd.DataFrame, baseline: str, metrics: Sequence[str] = tuple(SEPARATION_METRICS)
) -> pd.DataFrame:
    """Each trained variant against `baseline` on every metric of the per-seed summary
    (`summary_table`'s rows), one row per variant x metric (`SEPARATION_COLUMNS`).

    Two readings of "beyond the seed spread", both over seeds:

    * **separated** (unpaired): every seed of the variant lies beyond every seed of the baseline
      (their min-max ranges do not touch): the gap is larger than either's seed spread.
    * **paired**: the per-seed differences variant − baseline for the seeds both ran (a seed
      fixes the data order and the dropout draws for every variant): their mean, sd and how
      many are > 0.

    Variants whose policy is the reference (`base`) and the baseline itself are left out; an
    empty table when the baseline did not run.
    """
    trained = summary[summary["note"].fillna("") != REFERENCE_NOTE]
    base = trained[trained["variant"] == baseline].set_index("seed")
    rows = []
    if base.empty:
        return pd.DataFrame(rows, columns=SEPARATION_COLUMNS)
    for variant, group in trained.groupby("variant", sort=False):
        if variant == baseline:
            continue
        group = group.set_index("seed")
        shared = sorted(set(group.index) & set(base.index))
        for metric in metrics:
            a, b = group[metric].to_numpy(float), base[metric].to_numpy(float)
            paired = (group.loc[shared, metric] - base.loc[shared, metric]).to_numpy(float)
            rows.append(
                {
                    "variant": variant,
                    "baseline": baseline,
                    "metric": metric,
                    "n_seeds": len(a),
                    "variant_mean": float(a.mean()),
                    "variant_min": float(a.min()),
                    "variant_max": float(a.max()),
                    "baseline_mean": float(b.mean()),
                    "baseline_min": float(b.min()),
                    "baseline_max": float(b.max()),
                    "difference": float(a.mean() - b.mean()),
                    "separated": bool(a.min() > b.max() or a.max() < b.min()),
                    "n_paired": len(paired),
                    "paired_mean": float(paired.mean()) if len(paired) else math.nan,
                    "paired_sd": _sd(paired),
                    "paired_positive": int((paired > 0).sum()),
                }
            )
    return pd.DataFrame(rows, columns=SEPARATION_COLUMNS)


def heldout_scores(
    pairs_path: str | Path,
    reference_path: str | Path,
    policy_dir: str | Path | None,
    training: dict[str, Any],
    work_dir: str | Path,
    variant: str,
    seed: int,
) -> pd.DataFrame:
    """The per-pair score file of one variant x seed (`PAIR_COLUMNS`): its policy (a trained
    checkpoint; None when the policy is the reference) on the held-out pairs, the policy's
    log-probs from `prefopt.training.trainer.pair_logps` (the reference cache's code path)."""
    import torch

    from prefopt.training.reference_cache import cache_record, read_reference_cache

    pairs = read_jsonl(pairs_path)
    # The trained policy is not the reference model: pairs and numerics are compared, not weights.
    expected = cache_record(None, pairs_path, training, torch.cuda.is_available())
    reference = read_reference_cache(reference_path, expected)
    policy = None
    if policy_dir is not None:
        from prefopt.training.trainer import pair_logps

        scored = pair_logps(policy_dir, pairs_path, training, work_dir)
        policy = [
            {"pair_id": p, "chosen_logps": c, "rejected_logps": r}
            for p, c, r in zip(scored["pair_id"], scored["chosen"], scored["rejected"], strict=True)
        ]
    table = preference_margins(pairs, reference.values(), policy)
    table.insert(0, "seed", int(seed))
    table.insert(0, "variant", variant)
    return table
