"""The paper's claims, each with the test this run applies and its verdict.

One ``Claim`` record per checkable claim of ``workflow/docs/paper.md`` §4.1 (claims 6–8 are
arguments without a measurement and have none). Each record names the paper's section, what it
says, how this run tests it, and a check that reads the run's scores and returns a ``Verdict``:

- **supported**: the run's interval (or its seed ranges) lies wholly on the claim's side;
- **contradicted**: it lies wholly on the other side;
- **not resolved**: the run tested the claim and cannot tell (an interval that includes zero,
  overlapping seed ranges, one seed only);
- **not testable**: the run lacks what the test needs (a variant, a second seed, LC win rates),
  with the reason.

The tests, chosen before any result was seen and stated in the table:

- win rates of two variants: the paired per-prompt difference and its hierarchical bootstrap
  interval over seeds and prompts (``artifacts.paired_comparison``, the same numbers as the
  paired-comparisons table); with one seed no claim is decided, as the seed-to-seed spread is
  unknown;
- LC win rates: alpaca_eval gives one per variant and seed and no interval, so the seed ranges
  of the two variants must not touch (at least two seeds each);
- the active-pair fraction (training logs, no judge): per seed, as logged by the trainer
  (``prefopt.training.diagnostics``); a verdict needs the same sign in every seed, at least two.

Claims about win rates hold only for the judge that produced them: the table names it, and a
local judge makes them a pipeline check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from prefopt.reporting.artifacts import (
    bucket_edges,
    bucket_text,
    fmt,
    fmt_ci,
    length_buckets,
    paired_comparison,
    preference_score,
)

SUPPORTED, CONTRADICTED, NOT_RESOLVED, NOT_TESTABLE = (
    "supported",
    "contradicted",
    "not resolved",
    "not testable",
)
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_RESOLVED, NOT_TESTABLE)

#: Claim 4's reading of "rarely reaches the margin" (final active-pair fraction per seed): at
#: least this share of pairs still active supports it, at most ``MOSTLY_SATURATED`` contradicts it.
MOSTLY_ACTIVE = 0.9
MOSTLY_SATURATED = 0.5
#: The β at which the paper reports claim 4 (Section 4.2.1).
PAPER_HINGE_BETA = 0.1
#: Losses whose gradient is exactly zero past a threshold (claims 3–4).
HINGE_LOSSES = ("dpo_hinge", "apo_hinge_zero")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    estimate: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass
class Evidence:
    """What the checks read: per-prompt judgments (one judge), per-seed win rates,
    training logs and the variants' metadata (variants.csv: label, loss, beta)."""

    per_prompt: pd.DataFrame  # variant, seed, index, preference[, preferences]
    alpaca_eval: pd.DataFrame  # variant, seed, win_rate, length_controlled_winrate, ...
    diagnostics: pd.DataFrame  # variant, seed, step, active_fraction, n_pairs_bucket_*, ...
    variants: pd.DataFrame  # index variant; label, loss, beta
    baseline: str = "base"
    n_bootstrap: int = 2000
    bootstrap_seed: int = 20250811
    level: float = 0.95

    def __post_init__(self) -> None:
        self.per_prompt = self.per_prompt.copy()
        self.per_prompt["score"] = preference_score(self.per_prompt["preference"])

    def label(self, v: str) -> str:
        return str(self.variants["label"].get(v, v)) if "label" in self.variants else v

    def judged(self) -> set[str]:
        return set(self.per_prompt["variant"])

    def trained(self) -> list[str]:
        """Variants with a loss that the run judged, in table order."""
        loss = self.variants["loss"] if "loss" in self.variants else pd.Series(dtype=object)
        return [v for v in self.variants.index if v in self.judged() and pd.notna(loss.get(v))]

    def with_loss(self, losses: Sequence[str]) -> list[str]:
        if "loss" not in self.variants:
            return []
        return [v for v in self.variants.index if self.variants["loss"].get(v) in losses]


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str  # where the paper makes it
    statement: str
    test: str  # how this run tests it
    check: Callable[[Evidence], Verdict]


# --- the verdict rules ------------------------------------------------------------------------


def interval_verdict(lo: float, hi: float, n_seeds: int) -> tuple[str, str]:
    """(verdict, reason) of an interval of "A − B" for the claim "A > B"."""
    if n_seeds < 2:
        return NOT_RESOLVED, "one seed: the seed-to-seed spread is unknown"
    if lo > 0:
        return SUPPORTED, "the interval lies above zero"
    if hi < 0:
        return CONTRADICTED, "the interval lies below zero"
    return NOT_RESOLVED, "the interval includes zero"


def ranges_verdict(a: Sequence[float], b: Sequence[float]) -> tuple[str, str]:
    """(verdict, reason) of the claim "A > B" from per-seed values: the ranges must not touch."""
    a = [x for x in a if np.isfinite(x)]
    b = [x for x in b if np.isfinite(x)]
    if len(a) < 2 or len(b) < 2:
        return NOT_RESOLVED, "fewer than two seeds on a side: no seed range"
    if min(a) > max(b):
        return SUPPORTED, "every seed of A lies above every seed of B"
    if max(a) < min(b):
        return CONTRADICTED, "every seed of A lies below every seed of B"
    return NOT_RESOLVED, "the seed ranges overlap"


def sign_verdict(diffs: Sequence[float]) -> tuple[str, str]:
    """(verdict, reason) of "d > 0" from one difference per seed: the same sign in every seed."""
    d = [x for x in diffs if np.isfinite(x)]
    if len(d) < 2:
        return NOT_RESOLVED, "fewer than two seeds"
    if all(x > 0 for x in d):
        return SUPPORTED, "positive in every seed"
    if all(x < 0 for x in d):
        return CONTRADICTED, "negative in every seed"
    return NOT_RESOLVED, "the sign differs between seeds"


def combine(verdicts: Sequence[Verdict], estimates: str) -> Verdict:
    """A claim made of parts: contradicted if one part is, supported if all are, else not
    resolved (not testable only when every part is)."""
    kinds = [v.verdict for v in verdicts]
    reasons = "; ".join(v.reason for v in verdicts)
    if all(k == NOT_TESTABLE for k in kinds):
        return Verdict(NOT_TESTABLE, estimates, reasons)
    tested = [k for k in kinds if k != NOT_TESTABLE]
    if CONTRADICTED in tested:
        return Verdict(CONTRADICTED, estimates, reasons)
    if all(k == SUPPORTED for k in tested):
        return Verdict(SUPPORTED, estimates, reasons)
    return Verdict(NOT_RESOLVED, estimates, reasons)


# --- the checks -------------------------------------------------------------------------------


def _absent(ev: Evidence, *variants: str) -> Verdict | None:
    missing = [v for v in variants if v not in ev.judged()]
    if missing:
        return Verdict(NOT_TESTABLE, "", f"{', '.join(missing)} not in this run")
    return None


def win_rate_gain(ev: Evidence, a: str, b: str) -> Verdict:
    """A's win rate above B's: the paired difference and its bootstrap interval."""
    if (skip := _absent(ev, a, b)) is not None:
        return skip
    r = paired_comparison(ev.per_prompt, a, b, ev.n_bootstrap, ev.bootstrap_seed, ev.level)
    if r["status"] != "run":
        return Verdict(NOT_TESTABLE, "", r["status"])
    lo, hi, n = r["bootstrap_ci_low"], r["bootstrap_ci_high"], int(r["n_seeds"])
    verdict, reason = interval_verdict(lo, hi, n)
    estimate = (
        f"{ev.label(a)} − {ev.label(b)}: {fmt(r['mean_diff'], 2)} points "
        f"{fmt_ci(lo, hi, 2)} ({n} seed{'s' if n != 1 else ''})"
    )
    return Verdict(verdict, estimate, reason)


def _lc(ev: Evidence, v: str) -> list[float]:
    rows = ev.alpaca_eval[ev.alpaca_eval["variant"] == v]
    return pd.to_numeric(rows.get("length_controlled_winrate"), errors="coerce").tolist()


def _lc_missing(ev: Evidence, v: str) -> str:
    rows = ev.alpaca_eval[ev.alpaca_eval["variant"] == v]
    reasons = rows.get("lc_missing_reason", pd.Series(dtype=object)).dropna().astype(str)
    reasons = [r for r in reasons if r.strip()]
    return reasons[0] if reasons else "no LC win rate"


def lc_gain(ev: Evidence, a: str, b: str) -> Verdict:
    """A's LC win rate above B's: their seed ranges."""
    if (skip := _absent(ev, a, b)) is not None:
        return skip
    la, lb = _lc(ev, a), _lc(ev, b)
    for v, values in ((a, la), (b, lb)):
        if not any(np.isfinite(values)):
            return Verdict(NOT_TESTABLE, "", f"{v}: {_lc_missing(ev, v)}")
    verdict, reason = ranges_verdict(la, lb)
    estimate = f"LC {ev.label(a)} {_range(la)} vs {ev.label(b)} {_range(lb)}"
    return Verdict(verdict, estimate, reason)


def _range(values: Sequence[float]) -> str:
    v = [x for x in values if np.isfinite(x)]
    if len(v) == 1:
        return fmt(v[0])
    return f"{fmt(min(v))}–{fmt(max(v))}"


def best_win_rate(ev: Evidence, a: str = "apo_hinge_zero") -> Verdict:
    """A's win rate above every other trained variant's."""
    if (skip := _absent(ev, a)) is not None:
        return skip
    others = [v for v in ev.trained() if v != a]
    if not others:
        return Verdict(NOT_TESTABLE, "", "no other trained variant in this run")
    parts = []
    for b in others:
        part = win_rate_gain(ev, a, b)
        parts.append(Verdict(part.verdict, part.estimate, f"vs {ev.label(b)}: {part.reason}"))
    return combine(parts, "; ".join(p.estimate for p in parts))


def _per_seed_buckets(ev: Evidence, v: str) -> tuple[str, str, list[float]] | str:
    """(long bucket, short bucket, per-seed active fraction short − long) for variant v, or why
    not: the most extreme populated bucket with the chosen answer shorter (upper edge ≤ 0) and
    the one with it longer (lower edge ≥ 0); a bucket across zero counts for neither side."""
    d = ev.diagnostics[ev.diagnostics["variant"] == v]
    buckets = length_buckets(d.columns)
    if d.empty or not buckets:
        return "no length-bucket counts logged"
    populated = [b for b in buckets if d[f"n_pairs_bucket_{b}"].sum() > 0]
    shorter = [b for b in populated if bucket_edges(b)[1] <= 0]
    longer = [b for b in populated if bucket_edges(b)[0] >= 0]
    if not shorter or not longer:
        side = "shorter" if not shorter else "longer"
        return f"no pair with the chosen answer {side} by a bucket's width"
    short = min(shorter, key=lambda b: bucket_edges(b)[1])
    long_ = max(longer, key=lambda b: bucket_edges(b)[0])
    diffs = []
    for _, g in d.groupby("seed"):
        frac = {
            b: g[f"n_active_bucket_{b}"].sum() / g[f"n_pairs_bucket_{b}"].sum()
            if g[f"n_pairs_bucket_{b}"].sum()
            else math.nan
            for b in (short, long_)
        }
        diffs.append(frac[short] - frac[long_])
    return long_, short, diffs


def long_pairs_saturate_first(ev: Evidence) -> Verdict:
    """Claim 3: in every hinge variant, pairs whose chosen answer is much longer lose their
    gradient more often than pairs whose chosen answer is much shorter."""
    hinge = [v for v in ev.with_loss(HINGE_LOSSES) if v in set(ev.diagnostics["variant"])]
    if not hinge:
        return Verdict(NOT_TESTABLE, "", "no hinge variant (DPO-hinge, APO-hinge-zero) trained")
    parts, estimates = [], []
    for v in hinge:
        found = _per_seed_buckets(ev, v)
        if isinstance(found, str):
            parts.append(Verdict(NOT_TESTABLE, "", f"{ev.label(v)}: {found}"))
            continue
        long_, short, diffs = found
        verdict, reason = sign_verdict(diffs)
        parts.append(Verdict(verdict, "", f"{ev.label(v)}: short − long {reason}"))
        estimates.append(
            f"{ev.label(v)}: active fraction at chosen − rejected {bucket_text(short)} tokens "
            f"minus at {bucket_text(long_)}, per seed " + " ".join(fmt(x, 3) for x in diffs)
        )
    return combine(parts, "; ".join(estimates))


def hinge_rarely_saturates(ev: Evidence) -> Verdict:
    """Claim 4: at β = 0.1 the hinge variants end training with most pairs still active."""
    beta = pd.to_numeric(ev.variants.get("beta"), errors="coerce")
    hinge = [
        v
        for v in ev.with_loss(HINGE_LOSSES)
        if v in set(ev.diagnostics["variant"]) and math.isclose(beta.get(v, math.nan), 0.1)
    ]
    if not hinge:
        return Verdict(NOT_TESTABLE, "", "no hinge variant trained at β = 0.1")
    parts, estimates = [], []
    last = ev.diagnostics.sort_values("step").groupby(["variant", "seed"]).tail(1)
    for v in hinge:
        final = pd.to_numeric(last.loc[last["variant"] == v, "active_fraction"], errors="coerce")
        final = [x for x in final if np.isfinite(x)]
        if len(final) < 2:
            parts.append(Verdict(NOT_RESOLVED, "", f"{ev.label(v)}: fewer than two seeds"))
        elif all(x >= MOSTLY_ACTIVE for x in final):
            parts.append(Verdict(SUPPORTED, "", f"{ev.label(v)}: ≥ {MOSTLY_ACTIVE} in every seed"))
        elif all(x <= MOSTLY_SATURATED for x in final):
            reason = f"{ev.label(v)}: ≤ {MOSTLY_SATURATED} in every seed"
            parts.append(Verdict(CONTRADICTED, "", reason))
        else:
            reason = f"{ev.label(v)}: between {MOSTLY_SATURATED} and {MOSTLY_ACTIVE} or mixed"
            parts.append(Verdict(NOT_RESOLVED, "", reason))
        estimates.append(
            f"{ev.label(v)}: final active fraction per seed " + " ".join(fmt(x, 3) for x in final)
        )
    return combine(parts, "; ".join(estimates))


def length_exploitation(ev: Evidence) -> Verdict:
    """Claim 5: most trained variants raise the raw win rate over the base model but not the LC
    win rate. Supported when more than half do (win-rate interval above zero, LC seed ranges
    not above the base's); contradicted when more than half raise the LC win rate."""
    if (skip := _absent(ev, ev.baseline)) is not None:
        return skip
    trained = ev.trained()
    if not trained:
        return Verdict(NOT_TESTABLE, "", "no trained variant in this run")
    if not any(np.isfinite(_lc(ev, ev.baseline))):
        return Verdict(NOT_TESTABLE, "", f"{ev.baseline}: {_lc_missing(ev, ev.baseline)}")
    exploit = lc_up = 0
    estimates = []
    for v in trained:
        wr = win_rate_gain(ev, v, ev.baseline)
        lc = lc_gain(ev, v, ev.baseline)
        exploit += wr.verdict == SUPPORTED and lc.verdict != SUPPORTED
        lc_up += lc.verdict == SUPPORTED
        estimates.append(f"{ev.label(v)}: win rate {wr.verdict}, LC gain {lc.verdict}")
    n = len(trained)
    text = f"{exploit} of {n} raise the win rate but not the LC win rate; {lc_up} raise the LC"
    if exploit > n / 2:
        return Verdict(SUPPORTED, "; ".join(estimates), text)
    if lc_up > n / 2:
        return Verdict(CONTRADICTED, "; ".join(estimates), text)
    return Verdict(NOT_RESOLVED, "; ".join(estimates), text)


WIN_RATE_TEST = "paired win-rate difference, bootstrap interval over seeds and prompts"
LC_TEST = "LC win rates per seed: the seed ranges must not touch"

#: The checkable claims of workflow/docs/paper.md §4.1, in its order.
CLAIMS: tuple[Claim, ...] = (
    Claim(
        "1a",
        "Table 1",
        "APO-hinge-zero has the best AlpacaEval win rate",
        f"vs every other trained variant of the run: {WIN_RATE_TEST}",
        best_win_rate,
    ),
    Claim(
        "1b",
        "Table 1",
        "APO-hinge-zero's LC win rate beats the base model's",
        LC_TEST,
        lambda ev: lc_gain(ev, "apo_hinge_zero", ev.baseline),
    ),
    Claim(
        "2a",
        "Table 1, §6.1",
        "APO → APO-hinge-zero raises the win rate (paper: +2.0)",
        WIN_RATE_TEST,
        lambda ev: win_rate_gain(ev, "apo_hinge_zero", "apo_zero"),
    ),
    Claim(
        "2b",
        "Table 1, §6.1",
        "APO → APO-hinge-zero raises the LC win rate (paper: +1.39)",
        LC_TEST,
        lambda ev: lc_gain(ev, "apo_hinge_zero", "apo_zero"),
    ),
    Claim(
        "2c",
        "Table 1, §6.1",
        "DPO → DPO-hinge raises the win rate (paper: +0.2)",
        WIN_RATE_TEST,
        lambda ev: win_rate_gain(ev, "dpo_hinge", "dpo"),
    ),
    Claim(
        "2d",
        "Table 1, §6.1",
        "DPO → DPO-hinge raises the LC win rate (paper: +1.35)",
        LC_TEST,
        lambda ev: lc_gain(ev, "dpo_hinge", "dpo"),
    ),
    Claim(
        "3",
        "§6.2",
        "The hinge mines hard examples: pairs won by the longer answer saturate first",
        "active-pair fraction, pairs with the chosen answer much shorter minus much longer "
        "(the most extreme populated length bucket on each side of zero), per seed: the same "
        "sign in every seed",
        long_pairs_saturate_first,
    ),
    Claim(
        "4",
        "§4.2.1",
        "At β = 0.1 the hinge rarely reaches its margin (stays mostly linear)",
        f"final active-pair fraction per seed: ≥ {MOSTLY_ACTIVE} in every seed supports, "
        f"≤ {MOSTLY_SATURATED} in every seed contradicts",
        hinge_rarely_saturates,
    ),
    Claim(
        "5",
        "§6.4.3",
        "Most methods raise the raw win rate but not the LC win rate (length exploitation)",
        "each trained variant vs the base model: win-rate interval above zero and LC seed "
        "ranges not above the base's, for more than half of them",
        length_exploitation,
    ),
)

#: Which claims a judge decides (the others read training logs only).
JUDGED = {"1a", "1b", "2a", "2b", "2c", "2d", "5"}


def claims_table(ev: Evidence, judge_title: str, claims: Sequence[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per claim: id, paper section, statement, test, judge, estimate, verdict, reason."""
    rows: list[dict[str, Any]] = []
    for c in claims:
        v = c.check(ev)
        rows.append(
            {
                "claim": c.id,
                "paper": c.paper,
                "statement": c.statement,
                "test": c.test,
                "judge": judge_title if c.id in JUDGED else "none (training logs)",
                "estimate": v.estimate,
                "verdict": v.verdict,
                "reason": v.reason,
            }
        )
    return pd.DataFrame(rows)
