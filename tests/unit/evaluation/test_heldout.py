"""Held-out preference accuracy and reward margin (prefopt.evaluation.heldout): the pure statistics,
the tie rule, the base variant's convention, the overlap check, and a trained tiny policy scored
through the real log-prob path (prefopt.training.trainer.pair_logps, the reference cache's)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prefopt.config import load_config
from prefopt.data.prepare import check_pairs, read_jsonl, write_jsonl
from prefopt.evaluation.heldout import (
    REFERENCE_NOTE,
    SEPARATION_COLUMNS,
    SUMMARY_COLUMNS,
    HeldoutOverlapError,
    bootstrap_ci,
    pair_correct,
    preference_margins,
    preference_summary,
    select_heldout_pairs,
    separation,
    summary_table,
    table_over_seeds,
)

UF_TRAIN = "ultrafeedback_binarized/train.jsonl"


def _pair(pid, prompt="p", score_chosen=8.0, score_rejected=4.0):
    return {
        "pair_id": pid,
        "prompt": prompt,
        "chosen": "c",
        "rejected": "r",
        "score_chosen": score_chosen,
        "score_rejected": score_rejected,
        "source_index": int(pid[1:]),
    }


def _ref(pid, rc, rr):
    return {"pair_id": pid, "ref_chosen_logps": rc, "ref_rejected_logps": rr}


def _pol(pid, c, r):
    return {"pair_id": pid, "chosen_logps": c, "rejected_logps": r}


# --------------------------------------------------------------------------- margins, accuracy


def test_margin_is_the_beta_free_difference_of_log_ratios():
    pairs = [_pair("p0"), _pair("p1")]
    ref = [_ref("p0", -10.0, -12.0), _ref("p1", -20.0, -5.0)]
    pol = [_pol("p0", -9.0, -13.5), _pol("p1", -21.0, -4.0)]
    table = preference_margins(pairs, ref, pol)
    # (-9 - -10) - (-13.5 - -12) = 1 + 1.5; (-21 - -20) - (-4 - -5) = -1 - 1
    assert table["margin"].tolist() == [2.5, -2.0]
    assert not table["policy_is_reference"].any()
    assert table["ref_chosen_logps"].tolist() == [-10.0, -20.0]


def test_the_reference_as_policy_has_margin_exactly_zero():
    pairs = [_pair("p0"), _pair("p1")]
    ref = [_ref("p0", -10.123456789, -12.5), _ref("p1", -3e3, -1e-7)]
    table = preference_margins(pairs, ref, None)
    assert (table["margin"] == 0.0).all() and table["policy_is_reference"].all()
    assert table["chosen_logps"].tolist() == table["ref_chosen_logps"].tolist()


def test_missing_or_non_finite_log_probs_fail():
    pairs = [_pair("p0")]
    with pytest.raises(ValueError, match="p0 has no entry in the reference cache"):
        preference_margins(pairs, [], None)
    with pytest.raises(ValueError, match="p0 has no entry in the policy"):
        preference_margins(pairs, [_ref("p0", -1.0, -1.0)], [])
    with pytest.raises(ValueError, match="non-finite margin"):
        preference_margins(pairs, [_ref("p0", -1.0, -1.0)], [_pol("p0", math.nan, -1.0)])


def test_pair_accuracy_gives_half_credit_to_a_zero_margin():
    assert pair_correct([3.0, 0.0, -0.5, 1e-300, -0.0]).tolist() == [1.0, 0.5, 0.0, 1.0, 0.5]


def test_score_ties_are_excluded_from_accuracy_and_margin():
    margins = [1.0, -1.0, 100.0, -100.0]
    ties = [False, False, True, True]
    s = preference_summary(margins, ties, n_bootstrap=200, seed=0)
    assert (s["n_pairs"], s["n_ties"], s["n_evaluated"]) == (4, 2, 2)
    assert s["accuracy"] == 0.5 and s["mean_margin"] == 0.0


def test_summary_with_bootstrap_intervals():
    rng = np.random.default_rng(1)
    margins = rng.normal(0.3, 1.0, size=300)
    s = preference_summary(margins, np.zeros(300, bool), n_bootstrap=500, seed=7)
    assert s["accuracy"] == pytest.approx(np.mean(margins > 0))
    assert s["mean_margin"] == pytest.approx(margins.mean())
    assert s["accuracy_ci_low"] < s["accuracy"] < s["accuracy_ci_high"]
    assert s["mean_margin_ci_low"] < s["mean_margin"] < s["mean_margin_ci_high"]
    assert s["n_zero_margin"] == 0
    # seeded and pure: the same inputs give the same intervals
    again = preference_summary(margins, np.zeros(300, bool), n_bootstrap=500, seed=7)
    assert again == pytest.approx(s, nan_ok=True)
    assert math.isnan(s["mean_chosen_shift"])  # no shifts given: not a zero


def test_base_convention_accuracy_half_with_a_zero_width_interval():
    s = preference_summary(np.zeros(50), np.zeros(50, bool), n_bootstrap=100, seed=3)
    assert (s["accuracy"], s["accuracy_ci_low"], s["accuracy_ci_high"]) == (0.5, 0.5, 0.5)
    assert (s["mean_margin"], s["mean_margin_ci_low"], s["mean_margin_ci_high"]) == (0, 0, 0)
    assert s["n_zero_margin"] == 50


def test_no_evaluated_pairs_gives_nan():
    s = preference_summary([1.0, 2.0], [True, True], n_bootstrap=100, seed=0)
    assert s["n_evaluated"] == 0
    assert all(math.isnan(s[k]) for k in ("accuracy", "accuracy_ci_low", "mean_margin"))


def test_bootstrap_ci_is_seeded_and_widens_with_the_level():
    x = np.random.default_rng(0).normal(size=200)
    lo50, hi50 = bootstrap_ci(x, 1000, seed=5, level=0.5)
    lo99, hi99 = bootstrap_ci(x, 1000, seed=5, level=0.99)
    assert lo99 < lo50 < x.mean() < hi50 < hi99
    assert bootstrap_ci(x, 1000, seed=5, level=0.5) == (lo50, hi50)
    assert bootstrap_ci(x, 1000, seed=6, level=0.5) != (lo50, hi50)
    assert bootstrap_ci(np.full(9, 2.0), 100, seed=0) == (2.0, 2.0)
    assert all(math.isnan(v) for v in bootstrap_ci([], 100, seed=0))
    assert all(math.isnan(v) for v in bootstrap_ci([1.0], 0, seed=0))


def test_bootstrap_over_seeds_resamples_the_same_pairs_for_every_seed():
    x = np.random.default_rng(2).normal(size=100)
    # two seeds with the same per-pair values: the CI of the seed mean is the one-seed CI
    assert bootstrap_ci(np.vstack([x, x]), 400, seed=1) == pytest.approx(
        bootstrap_ci(x, 400, seed=1)
    )


# --------------------------------------------------------------------------- tables


def _per_pair(variant, seed, margins, ties=None, reference=False, chosen_shift=None):
    """Per-pair rows; the chosen log-prob moves by `chosen_shift` (default 0), the rejected by
    chosen_shift - margin, so the margin is the given one."""
    n = len(margins)
    shift = np.zeros(n) if chosen_shift is None else np.asarray(chosen_shift, dtype=float)
    ref_c, ref_r = np.full(n, -100.0), np.full(n, -110.0)
    return pd.DataFrame(
        {
            "variant": variant,
            "seed": seed,
            "pair_id": [f"p{i}" for i in range(n)],
            "score_tie": ties if ties is not None else [False] * n,
            "policy_is_reference": reference,
            "chosen_logps": ref_c + shift,
            "rejected_logps": ref_r + shift - np.asarray(margins, dtype=float),
            "ref_chosen_logps": ref_c,
            "ref_rejected_logps": ref_r,
            "margin": margins,
        }
    )


def test_summary_table_one_row_per_variant_and_seed_with_the_base_note():
    per_pair = pd.concat(
        [
            _per_pair("base", 0, [0.0] * 4, reference=True),
            _per_pair("dpo", 0, [1.0, 2.0, -1.0, 5.0], ties=[False, False, False, True]),
            _per_pair("dpo", 1, [1.0, -2.0, -1.0, 5.0]),
        ]
    )
    table = summary_table(per_pair, "test", n_bootstrap=100, seed=0)
    assert list(table.columns) == SUMMARY_COLUMNS
    assert table[["variant", "seed"]].values.tolist() == [["base", 0], ["dpo", 0], ["dpo", 1]]
    assert (table["heldout"] == "test").all()
    base, dpo0, dpo1 = table.to_dict("records")
    assert base["accuracy"] == 0.5 and base["note"] == REFERENCE_NOTE
    assert dpo0["accuracy"] == pytest.approx(2 / 3) and dpo0["n_ties"] == 1
    assert dpo0["note"] == "" and dpo1["accuracy"] == 0.5


def test_table_over_seeds_means_sds_and_a_shared_pair_bootstrap():
    a, b = [1.0, 2.0, -1.0, 3.0], [1.0, -2.0, -1.0, 5.0]
    per_pair = pd.concat(
        [_per_pair("base", s, [0.0] * 4, reference=True) for s in (0, 1)]
        + [_per_pair("dpo", 0, a), _per_pair("dpo", 1, b)]
    )
    table = table_over_seeds(per_pair, n_bootstrap=300, seed=0).set_index("variant")
    assert table.loc["base", "accuracy_mean"] == 0.5 and table.loc["base", "accuracy_sd"] == 0
    assert table.loc["base", "note"] == REFERENCE_NOTE
    dpo = table.loc["dpo"]
    assert (dpo["n_seeds"], dpo["n_evaluated"]) == (2, 4)
    assert dpo["accuracy_mean"] == pytest.approx((0.75 + 0.5) / 2)
    assert dpo["accuracy_sd"] == pytest.approx(np.std([0.75, 0.5], ddof=1))
    assert dpo["mean_margin_mean"] == pytest.approx((np.mean(a) + np.mean(b)) / 2)
    assert dpo["mean_margin_ci_low"] <= dpo["mean_margin_mean"] <= dpo["mean_margin_ci_high"]
    one_seed = table_over_seeds(_per_pair("dpo", 0, a), n_bootstrap=3, seed=0)
    assert math.isnan(one_seed.loc[0, "accuracy_sd"])


def test_shifts_are_the_mean_log_prob_moves_over_evaluated_pairs():
    # pair 3 is a score tie: left out of every statistic, its shift too
    per_pair = _per_pair(
        "dpo",
        0,
        [1.0, 2.0, 3.0, 40.0],
        ties=[False, False, False, True],
        chosen_shift=[-1.0, -2.0, -3.0, -90.0],
    )
    row = summary_table(per_pair, "test", n_bootstrap=10, seed=0).iloc[0]
    assert row["mean_chosen_shift"] == pytest.approx(-2.0)
    assert row["mean_rejected_shift"] == pytest.approx(np.mean([-2.0, -4.0, -6.0]))
    assert row["mean_chosen_shift"] - row["mean_rejected_shift"] == pytest.approx(
        row["mean_margin"]
    )
    base = summary_table(_per_pair("base", 0, [0.0] * 3, reference=True), "t", 10, 0).iloc[0]
    assert (base["mean_chosen_shift"], base["mean_rejected_shift"]) == (0.0, 0.0)
    over = table_over_seeds(
        pd.concat(
            [per_pair, _per_pair("dpo", 1, [1.0] * 4, per_pair["score_tie"], False, [-4.0] * 4)]
        ),
        10,
        0,
    ).iloc[0]
    assert over["mean_chosen_shift_mean"] == pytest.approx((-2.0 - 4.0) / 2)
    assert over["mean_chosen_shift_sd"] == pytest.approx(np.std([-2.0, -4.0], ddof=1))


def _seeds_summary(chosen_shifts: dict[str, list[float]]) -> pd.DataFrame:
    """summary_table of variants whose seeds moved the chosen log-prob by the given amounts
    (margin 1 everywhere), plus the base model."""
    parts = [_per_pair("base", s, [0.0] * 3, reference=True) for s in (0, 1, 2)]
    for variant, shifts in chosen_shifts.items():
        parts += [
            _per_pair(variant, s, [1.0] * 3, chosen_shift=[x] * 3) for s, x in enumerate(shifts)
        ]
    return summary_table(pd.concat(parts), "test", n_bootstrap=10, seed=0)


def test_separation_needs_disjoint_seed_ranges_and_reports_paired_differences():
    summary = _seeds_summary(
        {"dpo": [-6.0, -9.0, -7.0], "hinge": [-3.0, -5.0, -2.0], "close": [-5.0, -10.0, -6.5]}
    )
    table = separation(summary, "dpo")
    assert list(table.columns) == SEPARATION_COLUMNS
    assert set(table["variant"]) == {"hinge", "close"}  # neither base nor the baseline itself
    rows = table.set_index(["variant", "metric"])
    hinge = rows.loc[("hinge", "mean_chosen_shift")]
    assert hinge["separated"] and hinge["difference"] == pytest.approx((-10 / 3) - (-22 / 3))
    assert (hinge["variant_min"], hinge["baseline_max"]) == (-5.0, -6.0)
    assert (hinge["n_paired"], hinge["paired_positive"]) == (3, 3)
    assert hinge["paired_mean"] == pytest.approx(np.mean([3.0, 4.0, 5.0]))
    assert hinge["paired_sd"] == pytest.approx(1.0)
    # overlapping ranges are not separated, even when every paired difference is positive
    close = rows.loc[("close", "mean_chosen_shift")]
    assert not close["separated"] and close["paired_positive"] == 2
    # equal margins everywhere: nothing separates on the margin, the differences are 0
    margin = rows.loc[("hinge", "mean_margin")]
    assert not margin["separated"] and margin["paired_mean"] == pytest.approx(0.0)


def test_separation_pairs_only_the_seeds_both_ran_and_is_empty_without_the_baseline():
    summary = _seeds_summary({"dpo": [-6.0, -9.0, -7.0], "hinge": [-3.0, -5.0]})
    row = separation(summary, "dpo").set_index(["variant", "metric"]).loc[("hinge", "accuracy")]
    assert (row["n_seeds"], row["n_paired"]) == (2, 2)
    empty = separation(summary, "ipo")
    assert empty.empty and list(empty.columns) == SEPARATION_COLUMNS


def test_table_over_seeds_needs_the_same_pairs_in_every_seed():
    per_pair = pd.concat([_per_pair("dpo", 0, [1.0, 2.0]), _per_pair("dpo", 1, [1.0])])
    with pytest.raises(ValueError, match="did not score the same pairs"):
        table_over_seeds(per_pair, n_bootstrap=10, seed=0)


# --------------------------------------------------------------------------- selection, overlap


def _selected(repo, *configs):
    cfg = load_config(*(repo / c for c in configs))
    rows = read_jsonl(
        repo
        / cfg["mirror_dir"]
        / f"ultrafeedback_binarized/{cfg['data']['heldout']['split']}.jsonl"
    )
    train_rows = read_jsonl(
        repo / cfg["mirror_dir"] / f"ultrafeedback_binarized/{cfg['data']['train']['split']}.jsonl"
    )
    train, _ = check_pairs(train_rows, max_pairs=cfg["data"]["train"]["max_pairs"])
    return cfg, train, *select_heldout_pairs(rows, train, cfg["data"]["heldout"])


@pytest.mark.parametrize("overlay", ["config/embedded.yaml", "tests/config.tiny.yaml"])
def test_shipped_configs_hold_out_rows_training_never_reads(repo, overlay):
    cfg, train, heldout, report = _selected(repo, "config/config.yaml", overlay)
    spec = cfg["data"]["heldout"]
    assert len(heldout) == report["rows_kept"] == spec["max_pairs"]
    first, last = heldout[0]["source_index"], heldout[-1]["source_index"]
    # not the dataset's test split, and named for the rows it is
    assert spec["split"] == "train" and spec["name"] == f"train_rows_{first}_{last}"
    assert first > max(r["source_index"] for r in train)
    assert not {r["prompt"] for r in heldout} & {r["prompt"] for r in train}
    assert report["prompts_shared_with_training"] == 0
    assert report["score_ties"] == sum(r["score_chosen"] == r["score_rejected"] for r in heldout)


def test_paper_config_holds_out_the_test_split(repo):
    cfg = load_config(repo / "config/config.yaml")
    assert cfg["data"]["heldout"] == {
        "name": "test",
        "split": "test",
        "first_row": 0,
        "max_pairs": None,
    }


def test_overlap_with_training_prompts_fails_naming_the_config_keys(embedded_data):
    rows = read_jsonl(embedded_data / UF_TRAIN)
    train, _ = check_pairs(rows, max_pairs=16)
    heldout = {"name": "x", "split": "train", "first_row": 10, "max_pairs": 8}
    with pytest.raises(HeldoutOverlapError) as err:
        select_heldout_pairs(rows, train, heldout)
    message = str(err.value)
    assert message.startswith("config error at data.heldout:")
    assert "6 of 8 held-out pairs" in message  # rows 10-15 are training rows
    assert "data.heldout.split" in message and "data.heldout.first_row" in message
    # disjoint once first_row is past the training rows
    pairs, _ = select_heldout_pairs(rows, train, {**heldout, "first_row": 16})
    assert [p["source_index"] for p in pairs] == list(range(16, 24))


def test_overlap_ignores_whitespace_differences():
    train = [_pair("p0", prompt="Name a  colour.\n")]
    with pytest.raises(HeldoutOverlapError, match="1 of 1 held-out pairs"):
        select_heldout_pairs(
            [{"prompt": " Name a colour.", "chosen": "a", "rejected": "b"}],
            train,
            {"first_row": 0, "max_pairs": None},
        )


def test_first_row_past_the_source_fails_naming_the_key():
    with pytest.raises(ValueError, match=r"data\.heldout\.first_row: 5 is past the last row"):
        select_heldout_pairs(
            [{"prompt": "a", "chosen": "b", "rejected": "c"}], [], {"first_row": 5}
        )


# --------------------------------------------------------------------------- the real path

TRAINING = {
    "max_length": 96,
    "max_prompt_length": 48,
    "reference_batch_size": 3,
    "epochs": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-4,
    "lr_scheduler_type": "constant",
    "warmup_ratio": 0.0,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "precision": "auto",  # as the embedded default: bf16 autocast where native, else fp32
    "threads": 1,
}
CACHE_KEYS = ("precision", "max_length", "max_prompt_length", "reference_batch_size")


def test_trained_policy_heldout_scores_through_the_real_path(smollm2_dir, embedded_data, tmp_path):
    """Train a tiny DPO policy, then score it on held-out pairs with the rule's functions: the
    base model scored as a policy reproduces the reference cache bit for bit (same code path,
    batches and numerics, so Δ = 0 exactly), and the trained policy moves every log-prob."""
    from prefopt.evaluation.heldout import heldout_scores
    from prefopt.training.trainer import compute_reference_logps, train_policy

    rows = read_jsonl(embedded_data / UF_TRAIN)
    train, _ = check_pairs(rows, max_pairs=4)
    heldout, _ = select_heldout_pairs(rows, train, {"first_row": 4, "max_pairs": 5})
    write_jsonl(train, train_path := tmp_path / "train.jsonl")
    write_jsonl(heldout, heldout_path := tmp_path / "heldout.jsonl")
    cache = {k: TRAINING[k] for k in CACHE_KEYS}  # what the rules pass (prefopt.config)
    compute_reference_logps(smollm2_dir, train_path, tmp_path / "ref_train.jsonl", cache)
    compute_reference_logps(smollm2_dir, heldout_path, ref := tmp_path / "ref_heldout.jsonl", cache)

    as_policy = heldout_scores(heldout_path, ref, smollm2_dir, cache, tmp_path / "w0", "x", 0)
    assert (as_policy["margin"] == 0.0).all()
    assert as_policy["chosen_logps"].tolist() == as_policy["ref_chosen_logps"].tolist()

    policy = tmp_path / "policy"
    train_policy(
        smollm2_dir, train_path, tmp_path / "ref_train.jsonl", policy, tmp_path / "diag.csv",
        TRAINING, "dpo", {"beta": 0.1}, seed=0,
    )  # fmt: skip
    scored = heldout_scores(heldout_path, ref, policy, cache, tmp_path / "w1", "dpo", 0)
    assert scored["variant"].eq("dpo").all() and scored["seed"].eq(0).all()
    assert scored["pair_id"].tolist() == [p["pair_id"] for p in heldout]
    assert not scored["policy_is_reference"].any()
    assert (scored["chosen_logps"] != scored["ref_chosen_logps"]).all()
    expected = (scored["chosen_logps"] - scored["ref_chosen_logps"]) - (
        scored["rejected_logps"] - scored["ref_rejected_logps"]
    )
    assert scored["margin"].tolist() == expected.tolist()
    assert np.isfinite(scored["margin"]).all() and (scored["margin"] != 0).all()

    base = heldout_scores(heldout_path, ref, None, cache, tmp_path / "w2", "base", 0)
    table = summary_table(pd.concat([base, scored]), "rows_4_8", n_bootstrap=50, seed=0)
    assert table["n_pairs"].tolist() == [5, 5]
    assert table.loc[0, "accuracy"] == 0.5 and table.loc[0, "note"] == REFERENCE_NOTE
    assert 0.0 <= table.loc[1, "accuracy"] <= 1.0 and table.loc[1, "note"] == ""
