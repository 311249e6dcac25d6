"""prefopt.reporting.claims: each claim's verdict follows its stated rule on scores built so the
answer is known (a variant that always wins, one that always loses, a coin toss), and a claim the
run cannot test says why."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from prefopt.reporting import artifacts as art
from prefopt.reporting import claims as cl

SEEDS = (0, 1, 2)
PROMPTS = range(30)
VARIANTS = pd.DataFrame(
    {
        "variant": ["base", "dpo", "dpo_hinge", "apo_zero", "apo_hinge_zero"],
        "label": ["Base", "DPO", "DPO-hinge", "APO", "APO-hinge-zero"],
        "loss": [None, "dpo", "dpo_hinge", "apo_zero", "apo_hinge_zero"],
        "beta": [None, 0.1, 0.1, 0.1, 0.1],
    }
).set_index("variant")


def per_prompt(prefs: dict[str, object], seeds=SEEDS) -> pd.DataFrame:
    """Per-prompt judgments: a variant's preference is a constant (1 = loses to the reference,
    2 = wins) or "coin" (a seeded coin per prompt and seed)."""
    rng = np.random.default_rng(7)
    rows = []
    for v, p in prefs.items():
        for s in seeds:
            for i in PROMPTS:
                pref = float(rng.integers(1, 3)) if p == "coin" else float(p)
                rows.append({"variant": v, "seed": s, "index": i, "preference": pref})
    return pd.DataFrame(rows)


def alpaca_eval(lc: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": v, "seed": s, "length_controlled_winrate": x, "lc_missing_reason": ""}
            for v, values in lc.items()
            for s, x in zip(SEEDS, values, strict=True)
        ]
    )


def diagnostics(variant: str, final_active: list[float], short_long: list[tuple[int, int]]):
    """Two logging steps per seed; at the last, `final_active`; bucket counts of 10 pairs in the
    chosen-shorter (lt_m64) and chosen-longer (ge_64) buckets with (active short, active long)."""
    rows = []
    for s, (fin, (k_short, k_long)) in enumerate(zip(final_active, short_long, strict=True)):
        for step, frac in ((10, 1.0), (20, fin)):
            rows.append(
                {
                    "variant": variant,
                    "seed": s,
                    "step": step,
                    "active_fraction": frac,
                    "n_pairs_bucket_lt_m64": 10,
                    "n_pairs_bucket_m16_16": 0,
                    "n_pairs_bucket_ge_64": 10,
                    "n_active_bucket_lt_m64": k_short,
                    "n_active_bucket_m16_16": 0,
                    "n_active_bucket_ge_64": k_long,
                }
            )
    return pd.DataFrame(rows)


def evidence(prefs, lc=None, diag=None, seeds=SEEDS) -> cl.Evidence:
    lc = lc or {v: [30.0, 31.0, 32.0] for v in prefs}
    diag = diag if diag is not None else diagnostics("apo_hinge_zero", [1.0] * 3, [(5, 5)] * 3)
    return cl.Evidence(per_prompt(prefs, seeds), alpaca_eval(lc), diag, VARIANTS, n_bootstrap=300)


def verdict(ev: cl.Evidence, claim_id: str) -> cl.Verdict:
    return next(c for c in cl.CLAIMS if c.id == claim_id).check(ev)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("lo", "hi", "n", "expected"),
    [
        (0.5, 3.0, 3, cl.SUPPORTED),
        (-3.0, -0.5, 3, cl.CONTRADICTED),
        (-1.0, 1.0, 3, cl.NOT_RESOLVED),
        (0.0, 1.0, 3, cl.NOT_RESOLVED),  # touching zero is not above it
        (0.5, 3.0, 1, cl.NOT_RESOLVED),  # one seed decides nothing
    ],
)
def test_interval_rule(lo, hi, n, expected):
    assert cl.interval_verdict(lo, hi, n)[0] == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([5, 6], [1, 2], cl.SUPPORTED),
        ([1, 2], [5, 6], cl.CONTRADICTED),
        ([1, 5], [2, 6], cl.NOT_RESOLVED),
        ([2, 5], [1, 2], cl.NOT_RESOLVED),  # ranges that touch overlap
        ([5], [1, 2], cl.NOT_RESOLVED),  # one seed: no range
        ([5, float("nan")], [1, 2], cl.NOT_RESOLVED),
    ],
)
def test_seed_range_rule(a, b, expected):
    assert cl.ranges_verdict(a, b)[0] == expected


def test_a_part_that_contradicts_outweighs_parts_that_support():
    s, c, n, t = (cl.Verdict(k) for k in cl.VERDICTS)
    assert cl.combine([s, s], "").verdict == cl.SUPPORTED
    assert cl.combine([s, c], "").verdict == cl.CONTRADICTED
    assert cl.combine([s, n], "").verdict == cl.NOT_RESOLVED
    assert cl.combine([s, t], "").verdict == cl.SUPPORTED
    assert cl.combine([t, t], "").verdict == cl.NOT_TESTABLE
    with pytest.raises(ValueError, match="maybe"):
        cl.Verdict("maybe")


# --------------------------------------------------------------------------- the claims


def test_hinge_that_always_wins_supports_claim_2a_and_one_that_always_loses_contradicts_it():
    ev = evidence({"apo_hinge_zero": 2, "apo_zero": 1})
    v = verdict(ev, "2a")
    assert v.verdict == cl.SUPPORTED, v
    assert "100.00 points" in v.estimate and "3 seeds" in v.estimate
    assert verdict(evidence({"apo_hinge_zero": 1, "apo_zero": 2}), "2a").verdict == cl.CONTRADICTED


def test_a_coin_toss_leaves_the_claim_not_resolved():
    v = verdict(evidence({"apo_hinge_zero": "coin", "apo_zero": "coin"}), "2a")
    assert v.verdict == cl.NOT_RESOLVED and "includes zero" in v.reason


def test_one_seed_decides_nothing_even_when_every_prompt_agrees():
    ev = evidence({"dpo_hinge": 2, "dpo": 1}, seeds=(0,))
    v = verdict(ev, "2c")
    assert v.verdict == cl.NOT_RESOLVED and "one seed" in v.reason


def test_a_claim_about_an_absent_variant_is_not_testable_and_names_it():
    v = verdict(evidence({"apo_hinge_zero": 2, "dpo": 1}), "2c")
    assert v.verdict == cl.NOT_TESTABLE and "dpo_hinge not in this run" in v.reason


def test_win_rate_estimate_is_the_paired_comparison_tables(tmp_path):
    ev = evidence({"apo_hinge_zero": "coin", "apo_zero": "coin"})
    row = art.paired_comparison(ev.per_prompt, "apo_hinge_zero", "apo_zero", 300, 20250811)
    text = verdict(ev, "2a").estimate
    assert art.fmt_ci(row["bootstrap_ci_low"], row["bootstrap_ci_high"], 2) in text
    assert f"{row['mean_diff']:.2f} points" in text


def test_best_win_rate_needs_every_comparison_and_names_the_one_that_fails():
    ev = evidence({"apo_hinge_zero": 2, "apo_zero": 1, "dpo": 1, "base": 1})
    assert verdict(ev, "1a").verdict == cl.SUPPORTED
    ev = evidence({"apo_hinge_zero": "coin", "apo_zero": 1, "dpo": "coin", "base": 1})
    v = verdict(ev, "1a")
    assert v.verdict == cl.NOT_RESOLVED and "vs DPO: the interval includes zero" in v.reason
    ev = evidence({"apo_hinge_zero": 1, "apo_zero": 1, "dpo": 2, "base": 1})
    v = verdict(ev, "1a")
    assert v.verdict == cl.CONTRADICTED and "vs DPO: the interval lies below zero" in v.reason
    assert verdict(evidence({"apo_hinge_zero": 2, "base": 1}), "1a").verdict == cl.NOT_TESTABLE


def test_lc_claims_read_seed_ranges_and_say_why_lc_is_missing():
    prefs = {"apo_hinge_zero": 2, "apo_zero": 1}
    up = {"apo_hinge_zero": [20.0, 21.0, 22.0], "apo_zero": [10.0, 11.0, 12.0]}
    assert verdict(evidence(prefs, up), "2b").verdict == cl.SUPPORTED
    down = {"apo_hinge_zero": [10.0, 11.0, 12.0], "apo_zero": [20.0, 21.0, 22.0]}
    assert verdict(evidence(prefs, down), "2b").verdict == cl.CONTRADICTED
    overlap = {"apo_hinge_zero": [10.0, 21.0, 12.0], "apo_zero": [20.0, 11.0, 22.0]}
    assert verdict(evidence(prefs, overlap), "2b").verdict == cl.NOT_RESOLVED
    ev = evidence(prefs, {"apo_hinge_zero": [np.nan] * 3, "apo_zero": [1.0] * 3})
    ev.alpaca_eval["lc_missing_reason"] = "fewer than 805 instructions"
    v = verdict(ev, "2b")
    assert v.verdict == cl.NOT_TESTABLE and "fewer than 805 instructions" in v.reason


def test_claim_3_compares_chosen_shorter_with_chosen_longer_pairs_per_seed():
    prefs = {"apo_hinge_zero": 2}
    saturate = diagnostics("apo_hinge_zero", [0.7] * 3, [(9, 2), (8, 3), (9, 4)])
    v = verdict(evidence(prefs, diag=saturate), "3")
    assert v.verdict == cl.SUPPORTED and "< −64" in v.estimate and "≥ 64" in v.estimate
    reverse = diagnostics("apo_hinge_zero", [0.7] * 3, [(2, 9), (3, 8), (4, 9)])
    assert verdict(evidence(prefs, diag=reverse), "3").verdict == cl.CONTRADICTED
    mixed = diagnostics("apo_hinge_zero", [0.7] * 3, [(9, 2), (3, 8), (5, 5)])
    assert verdict(evidence(prefs, diag=mixed), "3").verdict == cl.NOT_RESOLVED
    one_side = saturate.assign(n_pairs_bucket_ge_64=0, n_pairs_bucket_m16_16=10)
    v = verdict(evidence(prefs, diag=one_side), "3")
    assert v.verdict == cl.NOT_TESTABLE and "chosen answer longer" in v.reason
    dpo_only = diagnostics("dpo", [1.0] * 3, [(5, 5)] * 3)
    assert verdict(evidence(prefs, diag=dpo_only), "3").verdict == cl.NOT_TESTABLE


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        ([0.95, 0.92, 0.97], cl.SUPPORTED),
        ([0.2, 0.4, 0.5], cl.CONTRADICTED),
        ([0.95, 0.4, 0.97], cl.NOT_RESOLVED),
        ([0.7, 0.8, 0.6], cl.NOT_RESOLVED),
    ],
)
def test_claim_4_reads_the_final_active_fraction_of_every_seed(final, expected):
    diag = diagnostics("apo_hinge_zero", final, [(5, 5)] * 3)
    assert verdict(evidence({"apo_hinge_zero": 2}, diag=diag), "4").verdict == expected


def test_claim_4_is_about_the_papers_beta():
    ev = evidence(
        {"apo_hinge_zero": 2}, diag=diagnostics("apo_hinge_zero", [0.95] * 3, [(5, 5)] * 3)
    )
    ev.variants = ev.variants.assign(beta=1.0)
    v = verdict(ev, "4")
    assert v.verdict == cl.NOT_TESTABLE and "β = 0.1" in v.reason


def test_claim_5_length_exploitation():
    prefs = {"base": 1, "dpo": 2, "apo_zero": 2, "apo_hinge_zero": 2}
    flat = {v: [30.0, 31.0, 32.0] for v in prefs}
    v = verdict(evidence(prefs, flat), "5")
    assert v.verdict == cl.SUPPORTED and v.reason.startswith("3 of 3 raise the win rate")
    lc_up = flat | {v: [40.0, 41.0, 42.0] for v in ("dpo", "apo_zero", "apo_hinge_zero")}
    assert verdict(evidence(prefs, lc_up), "5").verdict == cl.CONTRADICTED
    coin = {v: "coin" for v in prefs}
    assert verdict(evidence(coin, flat), "5").verdict == cl.NOT_RESOLVED


def test_claims_follow_the_papers_list_once_each():
    ids = [c.id for c in cl.CLAIMS]
    assert len(ids) == len(set(ids))
    assert {re.match(r"\d+", i).group() for i in ids} == {"1", "2", "3", "4", "5"}
    assert cl.JUDGED <= set(ids) and {"3", "4"}.isdisjoint(cl.JUDGED)
    assert all(c.statement and c.test and c.paper for c in cl.CLAIMS)


def test_claims_table_has_one_row_per_claim_with_a_known_verdict():
    t = cl.claims_table(evidence({"apo_hinge_zero": 2, "apo_zero": 1}), "judge X")
    assert list(t["claim"]) == [c.id for c in cl.CLAIMS]
    assert set(t["verdict"]) <= set(cl.VERDICTS)
    assert (t.loc[t["claim"] == "3", "judge"] == "none (training logs)").all()
    assert (t.loc[t["claim"] == "2a", "judge"] == "judge X").all()
    assert (t.loc[t["verdict"] == cl.NOT_TESTABLE, "reason"] != "").all()
