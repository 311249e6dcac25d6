"""prefopt.reporting.artifacts: the helpers every artifact notebook imports (tables, judges,
statistics).

Fast and without papermill: tests/unit/reporting/test_notebooks.py runs the notebooks themselves.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefopt.judging import LOCAL_JUDGE, mt_bench
from prefopt.reporting import artifacts as art

#: How the hierarchical bootstrap draws (artifacts.bootstrap_note).
CROSSED = "seeds and prompts (one prompt draw for all seeds: they answered the same prompts)"

# --------------------------------------------------------------------------- constants


def test_category_labels_follow_the_package_categories():
    assert tuple(art.CATEGORY_LABELS) == mt_bench.CATEGORIES
    assert art.CATEGORY_LABELS["stem"] == "STEM"
    assert art.CATEGORY_LABELS["writing"] == "Writing"
    assert art.CATEGORY_LABELS["humanities"] == "Humanities"


# --------------------------------------------------------------------------- paths


def test_repo_root_is_the_working_directory_or_its_parent(tmp_path):
    (tmp_path / "workflow").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert art.repo_root(tmp_path) == Path(".")
    assert art.repo_root(tmp_path / "notebooks") == Path("..")
    elsewhere = tmp_path / "other" / "deeper"
    elsewhere.mkdir(parents=True)
    assert art.repo_root(elsewhere) == Path(".")


def test_repo_path_keeps_absolute_paths_and_resolves_relative_ones(tmp_path):
    (tmp_path / "workflow").mkdir()
    (tmp_path / "notebooks").mkdir()
    assert art.repo_path(tmp_path / "x.csv") == tmp_path / "x.csv"
    rel = "tests/fixtures/scores/variants.csv"
    assert art.repo_path(rel, cwd=tmp_path) == Path(rel)
    assert art.repo_path(rel, cwd=tmp_path / "notebooks") == Path("..") / rel


def test_out_path_creates_the_parent_folder(tmp_path):
    target = tmp_path / "a" / "b" / "table.csv"
    assert art.out_path(target) == target
    assert target.parent.is_dir() and not target.exists()


# --------------------------------------------------------------------------- judges


def test_pick_judge_auto_prefers_the_api_judge_over_the_local_one():
    assert art.pick_judge([LOCAL_JUDGE, "gpt-4", LOCAL_JUDGE], "auto", "f") == "gpt-4"
    assert art.pick_judge([LOCAL_JUDGE], None, "f") == LOCAL_JUDGE
    assert art.pick_judge(["z_api", "a_api", LOCAL_JUDGE], "", "f") == "a_api"
    assert art.pick_judge([float("nan"), LOCAL_JUDGE], "auto", "f") == LOCAL_JUDGE


def test_pick_judge_explicit_and_errors():
    assert art.pick_judge([LOCAL_JUDGE, "gpt-4"], LOCAL_JUDGE, "f") == LOCAL_JUDGE
    assert art.pick_judge([1, 2], 2, "f") == "2"  # ids compared as text
    with pytest.raises(ValueError, match=r"mt_bench.csv: judge 'gpt-5' not found.*'gpt-4'"):
        art.pick_judge([LOCAL_JUDGE, "gpt-4"], "gpt-5", "mt_bench.csv")
    with pytest.raises(ValueError, match="no rows"):
        art.pick_judge([], "auto", "f")


def test_judge_rows_and_select_judge(capsys):
    df = pd.DataFrame({"judge": [LOCAL_JUDGE, "gpt-4", "gpt-4", None], "x": [1, 2, 3, 4]})
    rows = art.judge_rows(df, "gpt-4")
    assert rows["x"].tolist() == [2, 3]
    rows.loc[:, "x"] = 0  # a copy: the caller's frame is left alone
    assert df["x"].tolist() == [1, 2, 3, 4]

    chosen, rows = art.select_judge(df, "auto", "alpaca_eval.csv")
    assert chosen == "gpt-4" and rows["x"].tolist() == [2, 3]
    out = capsys.readouterr().out
    assert "alpaca_eval.csv: judge 'gpt-4'" in out and "'local'" in out

    chosen, rows = art.select_judge(df, LOCAL_JUDGE, "alpaca_eval.csv")
    assert chosen == LOCAL_JUDGE and rows["x"].tolist() == [1]


# --------------------------------------------------------------------------- variants


VARIANTS = pd.DataFrame(
    {
        "variant": ["dpo", "base", "apo_zero", "dpo", "nolabel"],
        "label": ["DPO", "Base", "APO", "DPO duplicate", None],
        "group": ["existing", "baseline", "existing", "existing", None],
        "order": [2, 1, 3, 9, 4],
    }
)


def test_variant_table_sorts_in_paper_order_and_puts_unknown_variants_last():
    t = art.variant_table(VARIANTS, ["zzz_new", "apo_zero", "dpo", "base", "dpo", "aaa_new"])
    assert list(t.index) == ["base", "dpo", "apo_zero", "aaa_new", "zzz_new"]
    assert t.loc["dpo", "label"] == "DPO"  # first row of a duplicated variant wins
    assert t.loc["base", "group"] == "baseline"
    assert t.loc["zzz_new", "label"] == "zzz_new" and t.loc["zzz_new", "group"] == "unknown"
    assert math.isinf(t.loc["aaa_new", "order"])


def test_variant_table_fills_missing_label_and_group():
    t = art.variant_table(VARIANTS, ["nolabel"])
    assert t.loc["nolabel"].tolist() == ["nolabel", "unknown", 4.0]
    assert art.variant_table(VARIANTS, []).empty


def test_read_variants_reads_the_csv(tmp_path):
    path = tmp_path / "variants.csv"
    VARIANTS.to_csv(path, index=False)
    pd.testing.assert_frame_equal(
        art.read_variants(path, ["apo_zero", "base"]),
        art.variant_table(VARIANTS, ["apo_zero", "base"]),
    )


EMBEDDED_PAIRS = [
    ("apo_hinge_zero", "apo_zero"),  # the paper's pairs, run or not
    ("dpo_hinge", "dpo"),
    ("apo_hinge_zero", "dpo"),  # vs DPO
    ("dpo", "base"),  # vs the base model
    ("apo_hinge_zero", "base"),
]


def test_comparison_pairs_of_the_embedded_run():
    """base, dpo, apo_hinge_zero: paper pairs first, then vs DPO, then vs base, in table order."""
    assert art.comparison_pairs(["base", "dpo", "apo_hinge_zero"], "base") == EMBEDDED_PAIRS
    text = "apo_hinge_zero:apo_zero,dpo_hinge:dpo"  # as the rule passes it
    got = art.comparison_pairs(["base", "dpo", "apo_hinge_zero"], "base", "dpo", text)
    assert got == EMBEDDED_PAIRS
    assert EMBEDDED_PAIRS[:2] == list(art.PAPER_PAIRS)


def test_comparison_pairs_follow_the_order_of_the_variants_given():
    got = art.comparison_pairs(["base", "dpo", "apo_zero", "aot"], "base", paper_pairs=())
    assert got == [
        ("apo_zero", "dpo"),
        ("aot", "dpo"),
        ("dpo", "base"),
        ("apo_zero", "base"),
        ("aot", "base"),
    ]


def test_comparison_pairs_without_dpo_have_no_vs_dpo_row():
    got = art.comparison_pairs(["base", "apo_zero", "apo_hinge_zero"], "base")
    assert got == [
        ("apo_hinge_zero", "apo_zero"),
        ("dpo_hinge", "dpo"),  # the paper's pair stays (reported as not run)
        ("apo_zero", "base"),
        ("apo_hinge_zero", "base"),
    ]
    assert not [p for p in got[2:] if "dpo" in p]


def test_comparison_pairs_without_the_base_model_or_with_neither():
    assert art.comparison_pairs(["dpo", "apo_zero"], "base") == [
        *art.PAPER_PAIRS,
        ("apo_zero", "dpo"),
    ]
    assert art.comparison_pairs(["dpo", "apo_zero"], None, None) == list(art.PAPER_PAIRS)
    assert art.comparison_pairs([], "base") == list(art.PAPER_PAIRS)


def test_comparison_pairs_remove_duplicates_and_self_comparisons():
    # dpo_hinge vs dpo is a paper pair and a vs-DPO pair: listed once, in the paper's place;
    # B vs A after A vs B, a repeated pair and a variant vs itself are dropped
    got = art.comparison_pairs(
        ["base", "dpo", "dpo", "dpo_hinge"],
        "base",
        paper_pairs=[("dpo_hinge", "dpo"), ("dpo", "dpo_hinge"), ("base", "base"), ("x", "y")],
    )
    assert got == [("dpo_hinge", "dpo"), ("x", "y"), ("dpo", "base"), ("dpo_hinge", "base")]
    assert len({frozenset(p) for p in got}) == len(got)
    # the base model as the reference: its pairs come once, as vs-reference rows
    assert art.comparison_pairs(["base", "dpo"], "base", "base", ()) == [("dpo", "base")]


def test_parse_pairs():
    assert art.parse_pairs(" a:b , c : d,") == [("a", "b"), ("c", "d")]
    assert art.parse_pairs("") == [] and art.parse_pairs(None) == []
    for bad in ["a", "a:b:c", ":b"]:
        with pytest.raises(ValueError, match="variant_a:variant_b"):
            art.parse_pairs(bad)


def test_colours_are_fixed_by_the_position_in_variants_csv(tmp_path):
    assert art.color_order(["a", "b", "c"], ["c", "a"]) == {"c": 2, "a": 0}
    assert art.color_order(["a"], ["x", "a", "y"]) == {"x": 1, "a": 0, "y": 2}
    known = [f"v{i}" for i in range(12)]
    assert art.color_order(known, ["v0", "v10", "v11"]) == {"v0": 0, "v10": 0, "v11": 1}

    path = tmp_path / "variants.csv"
    VARIANTS.to_csv(path, index=False)
    some = art.variant_colors(path, ["apo_zero"])
    every = art.variant_colors(path, ["base", "dpo", "apo_zero", "new"])
    assert some["apo_zero"] == every["apo_zero"]  # the same colour in every figure
    assert len(set(every.values())) == 4


# --------------------------------------------------------------------------- statistics


def test_preference_score_maps_preferences_to_win_rate_points():
    got = art.preference_score(pd.Series([1, 2, 1.5, "2", "failed", None]))
    np.testing.assert_allclose(got.to_numpy(float), [0, 100, 50, 100, np.nan, np.nan])


def test_rng_for_depends_only_on_seed_and_keys():
    def draw(*args):
        return art.rng_for(*args).integers(0, 10**9, size=4).tolist()

    assert draw(7, "dpo") == draw(7, "dpo")
    assert draw(7, "dpo") != draw(8, "dpo")
    assert draw(7, "dpo") != draw(7, "apo_zero")
    assert draw(7, "a", "b") != draw(7, "b", "a")


def test_bootstrap_ci_of_a_constant_is_that_constant():
    mat = np.full((2, 30), 40.0)
    assert art.bootstrap_ci(mat, 200, art.rng_for(1), 0.95) == (40.0, 40.0)


def test_bootstrap_ci_resamples_the_same_prompts_for_every_seed():
    row = np.linspace(0.0, 100.0, 25)
    mat = np.vstack([row, 100.0 - row])  # seed means cancel prompt by prompt, only jointly
    lo, hi = art.bootstrap_ci(mat, 500, art.rng_for(3), 0.95)
    assert lo == pytest.approx(50.0) and hi == pytest.approx(50.0)


def test_bootstrap_ci_brackets_the_mean_and_widens_with_the_level():
    rng = np.random.default_rng(0)
    mat = rng.choice([0.0, 50.0, 100.0], size=(3, 200))
    mean = mat.mean()
    lo50, hi50 = art.bootstrap_ci(mat, 1000, art.rng_for(5), 0.5)
    lo99, hi99 = art.bootstrap_ci(mat, 1000, art.rng_for(5), 0.99)
    assert lo99 < lo50 < mean < hi50 < hi99
    # seeded: the same generator state gives the same interval
    assert art.bootstrap_ci(mat, 1000, art.rng_for(5), 0.5) == (lo50, hi50)


def test_bootstrap_ci_skips_failed_judgments_and_degenerate_inputs():
    mat = np.array([[100.0, np.nan, 100.0, np.nan]])
    assert art.bootstrap_ci(mat, 300, art.rng_for(2), 0.9) == (100.0, 100.0)
    assert np.isnan(art.bootstrap_ci(np.full((2, 3), np.nan), 50, art.rng_for(2), 0.9)).all()
    assert np.isnan(art.bootstrap_ci(np.empty((2, 0)), 50, art.rng_for(2), 0.9)).all()
    assert np.isnan(art.bootstrap_ci(np.ones((2, 3)), 0, art.rng_for(2), 0.9)).all()


# --------------------------------------------------------------------------- hierarchical bootstrap


def _permuted_seeds(n_seeds: int, n_prompts: int, seed: int = 0) -> np.ndarray:
    """Seeds x prompts scores whose seeds have exactly the same mean (zero between-seed variance):
    each seed is its own shuffle of one set of win/tie/loss scores."""
    rng = np.random.default_rng(seed)
    base = rng.choice([0.0, 50.0, 100.0], size=n_prompts, p=[0.45, 0.1, 0.45])
    return np.vstack([rng.permutation(base) for _ in range(n_seeds)])


def _width(lo_hi: tuple[float, float]) -> float:
    return lo_hi[1] - lo_hi[0]


def test_hierarchical_bootstrap_with_one_seed_is_the_prompt_bootstrap():
    mat = _permuted_seeds(1, 120)
    mat[0, [3, 50]] = np.nan  # failed judgments are skipped by both
    reps = art.hierarchical_bootstrap(mat, 700, art.rng_for(11, "dpo"))
    assert reps.shape == (700,)
    assert art.percentile_interval(reps, 0.95) == art.bootstrap_ci(
        mat, 700, art.rng_for(11, "dpo"), 0.95
    )
    shared = art.hierarchical_bootstrap(mat, 700, art.rng_for(11, "dpo"), shared_prompts=True)
    np.testing.assert_array_equal(shared, reps)


def test_hierarchical_bootstrap_is_deterministic_for_a_fixed_generator_seed():
    mat = _permuted_seeds(3, 80) + np.array([[0.0], [10.0], [-5.0]])
    first = art.hierarchical_bootstrap(mat, 400, art.rng_for(5, "apo_zero"))
    np.testing.assert_array_equal(
        first, art.hierarchical_bootstrap(mat, 400, art.rng_for(5, "apo_zero"))
    )
    other = art.hierarchical_bootstrap(mat, 400, art.rng_for(6, "apo_zero"))
    assert not np.array_equal(first, other)


def test_hierarchical_bootstrap_without_between_seed_variance_is_near_the_prompt_bootstrap():
    """Seeds with equal means whose prompts disagree (rows permuted): nested draws match the
    prompt bootstrap; the shared draw is wider by at most sqrt((2S - 1) / S), the pigeonhole
    bootstrap's known double count of the seed x prompt interaction (conservative)."""
    mat = _permuted_seeds(4, 400)
    prompts = art.bootstrap_ci(mat, 4000, art.rng_for(2), 0.95)
    nested = art.hierarchical_bootstrap(mat, 4000, art.rng_for(1), shared_prompts=False)
    nested_ci = art.percentile_interval(nested, 0.95)
    assert nested_ci[0] < mat.mean() < nested_ci[1]
    assert _width(nested_ci) == pytest.approx(_width(prompts), rel=0.12)
    shared_ci = art.percentile_interval(art.hierarchical_bootstrap(mat, 4000, art.rng_for(1)), 0.95)
    assert _width(prompts) < _width(shared_ci) < 1.15 * math.sqrt(7 / 4) * _width(prompts)


def test_hierarchical_bootstrap_widens_with_between_seed_variance():
    flat = _permuted_seeds(4, 400)
    spread = flat + np.array([[-15.0], [-5.0], [5.0], [15.0]])  # seeds disagree by 30 points
    n = 3000
    flat_ci = art.percentile_interval(art.hierarchical_bootstrap(flat, n, art.rng_for(3)), 0.95)
    spread_ci = art.percentile_interval(art.hierarchical_bootstrap(spread, n, art.rng_for(3)), 0.95)
    prompts_ci = art.bootstrap_ci(spread, n, art.rng_for(3), 0.95)
    assert _width(prompts_ci) < _width(flat_ci) < 1.5 * _width(prompts_ci)  # blind to the seeds
    assert _width(spread_ci) > 2.5 * _width(flat_ci)
    assert _width(spread_ci) > 2.5 * _width(prompts_ci)
    # the SE adds both parts: sd of the seed means / sqrt(S) and the prompts' sd / sqrt(S * P),
    # the latter times sqrt((2S - 1) / S) for the shared draw (seeds drawn twice share prompts)
    seed_part = np.std(spread.mean(axis=1)) / math.sqrt(4)
    prompt_part = np.std(flat[0]) / math.sqrt(4 * 400)
    nested = art.hierarchical_bootstrap(spread, n, art.rng_for(4), shared_prompts=False)
    assert art.bootstrap_se(nested) == pytest.approx(math.hypot(seed_part, prompt_part), rel=0.08)
    shared = art.bootstrap_se(art.hierarchical_bootstrap(spread, n, art.rng_for(4)))
    inflated = prompt_part * math.sqrt(7 / 4)
    assert shared == pytest.approx(math.hypot(seed_part, inflated), rel=0.08)


def test_hierarchical_bootstrap_shared_prompts_keep_a_common_prompt_effect():
    row = np.linspace(0.0, 100.0, 200)
    same = np.vstack([row, row, row])  # seeds agree prompt by prompt
    n = 3000
    prompts = _width(art.bootstrap_ci(same, n, art.rng_for(7), 0.95))
    shared = art.hierarchical_bootstrap(same, n, art.rng_for(7))  # the default
    assert _width(art.percentile_interval(shared, 0.95)) == pytest.approx(prompts, rel=1e-12)
    nested = art.hierarchical_bootstrap(same, n, art.rng_for(7), shared_prompts=False)
    assert _width(art.percentile_interval(nested, 0.95)) < 0.7 * prompts  # ~ 1/sqrt(3) of it


def test_hierarchical_bootstrap_degenerate_inputs():
    assert art.hierarchical_bootstrap(np.empty((0, 5)), 10, art.rng_for(1)).size == 0
    assert art.hierarchical_bootstrap(np.empty((2, 0)), 10, art.rng_for(1)).size == 0
    assert art.hierarchical_bootstrap(np.ones((2, 3)), 0, art.rng_for(1)).size == 0
    assert art.hierarchical_bootstrap(np.full((2, 3), np.nan), 10, art.rng_for(1)).size == 0
    np.testing.assert_array_equal(
        art.hierarchical_bootstrap(np.full((3, 4), 40.0), 50, art.rng_for(1)), np.full(50, 40.0)
    )
    assert np.isnan(art.percentile_interval(np.empty(0), 0.95)).all()
    assert math.isnan(art.bootstrap_se(np.array([1.0]))) and art.bootstrap_se([1.0, 3.0]) > 0


def test_win_rate_uncertainty_per_variant_and_independent_of_the_others():
    pp = pd.DataFrame(
        [
            {"variant": v, "seed": s, "index": i, "score": float((i * (s + 2) + len(v)) % 3) * 50}
            for v in ("dpo", "base")
            for s in (0, 1, 2)
            for i in range(30)
        ]
    )
    pp.loc[(pp["variant"] == "dpo") & (pp["seed"] == 2), "score"] += 20.0
    got = art.win_rate_uncertainty(pp, 300, 9, 0.9)
    assert list(got.index) == ["dpo", "base"]
    mat = art.seed_prompt_matrix(pp, "dpo")
    assert list(mat.index) == [0, 1, 2] and mat.shape == (3, 30)
    reps = art.hierarchical_bootstrap(mat.to_numpy(float), 300, art.rng_for(9, "dpo"))
    lo, hi = art.percentile_interval(reps, 0.9)
    row = got.loc["dpo"]
    assert (row["ci_low"], row["ci_high"], row["se"]) == (lo, hi, art.bootstrap_se(reps))
    assert row["win_rate"] == pytest.approx(pp[pp["variant"] == "dpo"]["score"].mean())
    assert (row["n_seeds"], row["n_prompts"]) == (3, 30)
    alone = art.win_rate_uncertainty(pp[pp["variant"] == "dpo"], 300, 9, 0.9)
    pd.testing.assert_series_equal(alone.loc["dpo"], row)


def test_bootstrap_note_says_what_the_interval_is_and_the_single_seed_case():
    text = art.bootstrap_note(2000, 7, [3, 3], 0.95)
    assert text.startswith(f"95 % hierarchical bootstrap CI: {CROSSED}; B=2000")
    assert "with one seed it reduces to the bootstrap over prompts" in text
    assert "one seed per method here, so it is the bootstrap over prompts" in art.bootstrap_note(
        50, 7, [1, 1], 0.9
    )
    assert "for a method with one seed" in art.bootstrap_note(50, 7, [1, 3], 0.9)
    assert art.bootstrap_note(50, 7).startswith("Hierarchical bootstrap: seeds and prompts")


# --------------------------------------------------------------------------- judge labels


def test_judge_label_of_the_local_judge_names_its_model_and_the_caveat():
    lab = art.judge_label(LOCAL_JUDGE, "smollm2-135m-instruct")
    assert lab.local and lab.judge == LOCAL_JUDGE
    assert lab.note == (
        "local judge smollm2-135m-instruct: pipeline check, not comparable with GPT-4 numbers"
    )
    assert lab.title.startswith("local judge smollm2-135m-instruct")
    for unknown in (None, "", "  "):
        assert art.judge_label(LOCAL_JUDGE, unknown).note.startswith(
            "local judge (policy base model): pipeline check, not comparable with GPT-4 numbers"
        )


@pytest.mark.parametrize(
    "api", ["alpaca_eval_gpt4_turbo_fn", "gpt-4", "gpt-4-0613", "gpt-4.1-2025-04-14"]
)
def test_judge_label_of_an_api_judge_is_its_own_name(api):
    lab = art.judge_label(api, "smollm2-135m-instruct")
    assert not lab.local and api in lab.title and api in lab.note
    assert "local" not in lab.title + lab.note and "pipeline check" not in lab.note


@pytest.mark.parametrize(
    ("judge", "model", "paper", "original"),
    [
        ("alpaca_eval_gpt4_turbo_fn", "gpt-4-1106-preview", True, None),
        ("gpt-4-0613", "gpt-4-0613", True, None),
        ("alpaca_eval_fn_gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14", False, "gpt-4-1106-preview"),
        ("gpt-4.1-2025-04-14", "gpt-4.1-2025-04-14", False, "gpt-4-0613"),
    ],
)
def test_judge_label_names_the_model_and_whether_it_is_the_papers(judge, model, paper, original):
    """Issue 28 item 2: a substitute judge is never mistaken for the paper's in a table."""
    lab = art.judge_label(judge, None)
    assert lab.model == model and lab.paper is paper and model in lab.title and model in lab.note
    if paper:
        assert "the paper's" in lab.title and "substitute" not in lab.note
    else:
        assert f"not the paper's {original}" in lab.title
        assert f"a substitute for the paper's {original}" in lab.note
        assert "judge_calibration" in lab.note


def test_judge_label_of_an_unknown_id_keeps_its_name_and_claims_nothing():
    lab = art.judge_label("my-proxy-judge", None)
    assert lab.title == "judge my-proxy-judge" and lab.paper is False


def test_judge_label_of_a_pinned_open_weights_judge_names_it_and_is_no_pipeline_check():
    """Issue 28 item 5: the local judge on a registered open-weights model is a real judge: its
    label names the model and its pinned revision, and no caveat calls it a pipeline check; any
    other local model keeps the caveat."""
    lab = art.judge_label(LOCAL_JUDGE, "qwen2.5-7b-instruct")
    assert lab.local and lab.judge == LOCAL_JUDGE and not lab.paper
    assert lab.model == "qwen2.5-7b-instruct"
    assert lab.title == "open judge qwen2.5-7b-instruct (Qwen/Qwen2.5-7B-Instruct@a09a354)"
    assert lab.note.startswith(f"Judge: {lab.title}") and "judge_calibration" in lab.note
    assert "pipeline check" not in lab.title + lab.note
    for other in ("qwen2.5-1.5b-instruct", "smollm2-135m-instruct", None):
        assert "pipeline check" in art.judge_label(LOCAL_JUDGE, other).title


# --------------------------------------------------------------------------- LC cells and paths


def test_repo_relative_text_removes_absolute_paths(tmp_path):
    root = tmp_path / "repo"
    inside = root / "workflow" / "resources" / "data" / "alpaca_eval_lc"
    text = f"assets are not in {inside}; see {tmp_path / 'elsewhere' / 'mirror'}. n/a, tatsu-lab/x"
    shown = art.repo_relative_text(text, root)
    assert shown == (
        "assets are not in workflow/resources/data/alpaca_eval_lc; see …/mirror. n/a, tatsu-lab/x"
    )
    assert str(tmp_path) not in shown
    assert art.repo_relative_text(math.nan) == art.repo_relative_text(None) == ""


def _lc_table(reasons, n_lc, means=None):
    n = len(reasons)
    return pd.DataFrame(
        {
            "n_seeds": [2] * n,
            "n_seeds_lc": n_lc,
            "lc_win_rate_mean": means if means is not None else [math.nan] * n,
            "lc_win_rate_sd": [1.0] * n,
            "lc_missing_reason": reasons,
        }
    )


def test_lc_cells_one_reason_is_stated_once_without_paths(tmp_path):
    why = f"alpaca_eval's LC assets are not in {tmp_path}/mirror/alpaca_eval_lc"
    cells, notes = art.lc_win_rate_cells(_lc_table([why] * 3, [0, 0, 0]), root=tmp_path)
    assert cells == ["n/a", "n/a", "n/a"]
    assert notes == ["LC win rate n/a: alpaca_eval's LC assets are not in mirror/alpaca_eval_lc"]
    old_style = "LC win rate not computed: " + why  # score files written before the prefix went
    assert art.lc_win_rate_cells(_lc_table([old_style], [0]), root=tmp_path)[1] == notes


def test_lc_cells_with_several_reasons_and_partial_seeds():
    table = _lc_table(["", "GLM did not converge", "no assets", "no assets"], [2, 1, 0, 0])
    table.loc[:1, "lc_win_rate_mean"] = [40.0, 30.0]
    cells, notes = art.lc_win_rate_cells(table)
    assert cells == ["40.0 ± 1.0", "30.0 ± 1.0 (1/2 seeds) [1]", "n/a [2]", "n/a [2]"]
    assert notes == ["[1] LC win rate n/a: GLM did not converge", "[2] LC win rate n/a: no assets"]
    assert art.lc_win_rate_cells(table.iloc[:1]) == (["40.0 ± 1.0"], [])


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706204736),
        (0.975, 2, 4.302652730),
        (0.975, 3, 3.182446305),
        (0.975, 10, 2.228138852),
        (0.95, 4, 2.131846786),
    ],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert art.t_quantile(p, df) == pytest.approx(expected, abs=1e-6)


def test_wilson_interval():
    lo, hi = art.wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.236593, abs=1e-6), pytest.approx(0.763407, abs=1e-6))
    lo0, hi0 = art.wilson_interval(0, 20)
    assert lo0 == pytest.approx(0.0, abs=1e-12) and 0 < hi0 < 0.2
    lo_n, hi_n = art.wilson_interval(20, 20)
    assert hi_n == pytest.approx(1.0) and lo_n == pytest.approx(1 - hi0)
    assert art.wilson_interval(3, 40, level=0.99)[0] < art.wilson_interval(3, 40)[0]
    assert all(math.isnan(x) for x in art.wilson_interval(0, 0))


# --------------------------------------------------------------------------- MT-Bench scores


def test_valid_mt_bench_scores_drops_failed_grades_and_normalises_categories():
    raw = pd.DataFrame(
        {
            "category": [" Writing", "STEM", "math", "coding", "roleplay"],
            "score": [8, -1, "7.5", None, "oops"],
        }
    )
    valid, n_dropped = art.valid_mt_bench_scores(raw)
    assert n_dropped == 3
    assert valid["category"].tolist() == ["writing", "math"]
    assert valid["score"].tolist() == [8.0, 7.5]
    assert raw["category"].iloc[0] == " Writing"  # input left alone


def test_mt_bench_per_seed_means_over_questions_and_turns():
    mt = pd.DataFrame(
        {
            "variant": ["dpo"] * 5 + ["base"],
            "seed": [0, 0, 0, 1, 0, 0],
            "category": ["writing", "writing", "math", "writing", "made_up", "stem"],
            "score": [6.0, 8.0, 3.0, 9.0, 1.0, 5.0],
        }
    )
    per_seed = art.mt_bench_per_seed(mt)
    assert list(per_seed.columns) == list(mt_bench.CATEGORIES)
    assert per_seed.loc[("dpo", 0), "writing"] == 7.0
    assert per_seed.loc[("dpo", 0), "math"] == 3.0
    assert per_seed.loc[("dpo", 1), "writing"] == 9.0
    assert per_seed.loc[("base", 0), "stem"] == 5.0
    assert np.isnan(per_seed.loc[("dpo", 1), "math"])
    assert "made_up" not in per_seed.columns


# --------------------------------------------------------------------------- length buckets


def test_length_buckets_read_the_trainers_bucket_columns():
    from prefopt.training.diagnostics import DIAGNOSTIC_COLUMNS, bucket_labels

    assert art.length_buckets(DIAGNOSTIC_COLUMNS) == bucket_labels()
    cols = ["step", "n_pairs_bucket_lt_0", "n_active_bucket_lt_0", "n_pairs_bucket_ge_0"]
    assert art.length_buckets(cols) == ["lt_0"]  # a bucket without active counts is left out
    assert art.length_buckets(["step", "loss"]) == []


def test_bucket_text():
    from prefopt.training.diagnostics import bucket_labels

    assert [art.bucket_text(b) for b in bucket_labels()] == [
        "< −64",
        "−64…−16",
        "−16…16",
        "16…64",
        "≥ 64",
    ]
    assert [art.bucket_text(b) for b in bucket_labels((-8, 0))] == ["< −8", "−8…0", "≥ 0"]


# --------------------------------------------------------------------------- formatting


def test_number_formatting():
    assert art.fmt(12.345) == "12.3" and art.fmt(12.345, 2) == "12.35" and art.fmt(3, 0) == "3"
    assert art.fmt(None) == art.fmt(math.nan) == art.fmt(math.inf) == "n/a"
    assert art.fmt_pm(50.0, 1.234) == "50.0 ± 1.2"
    assert art.fmt_pm(50.0, math.nan) == art.fmt_pm(50.0, None) == "50.0"
    assert art.fmt_pm(math.nan, 1.0) == "n/a"
    assert art.fmt_ci(1.0, 2.345, 2) == "[1.00, 2.35]"
    assert art.fmt_ci(math.nan, 2.0) == art.fmt_ci(1.0, math.inf) == "n/a"


def test_tex_escape():
    assert art.tex_escape("50% & a_b #1") == r"50\% \& a\_b \#1"
    assert art.tex_escape("a\\b{c}") == r"a\textbackslash{}b\{c\}"
    assert art.tex_escape("1.0 ± 0.2, Δ ≥ ρ") == r"1.0 $\pm$ 0.2, $\Delta$ $\geq$ $\rho$"
    assert art.tex_escape("WR − LC") == "WR -- LC"
    assert art.tex_escape(3.5) == "3.5"


def test_markdown_table_aligns_numbers_right_and_text_left():
    df = pd.DataFrame({"Method": ["DPO", "APO-zero"], "n": [3, 12], "CI": ["[1, 2]", None]})
    assert art.markdown_table(df).splitlines() == [
        "| Method   |  n | CI     |",
        "|:---------|---:|:-------|",
        "| DPO      |  3 | [1, 2] |",
        "| APO-zero | 12 |        |",
    ]


def test_markdown_document_and_latex_table():
    pretty = pd.DataFrame({"Method": ["margin_σ"], "Win rate (%)": ["50.0 ± 1.0"]})
    md = art.markdown_document(pretty, "Caption & more", ["first note", "second"])
    assert md.startswith("**Caption & more**\n\n| Method")
    assert md.endswith("\n- first note\n- second\n")
    assert art.markdown_document(pretty, "C").endswith("|\n")

    tex = art.latex_table(pretty, "Win rate (%)", "tab:x", ["n_seeds: 2"])
    assert tex.startswith("\\begin{table}[t]\n\\centering\n\\small\n\\begin{tabular}")
    assert r"margin\_$\sigma$" in tex and r"Win rate (\%)" in tex
    assert r"50.0 $\pm$ 1.0" in tex
    assert "\\par\\smallskip\\footnotesize\nn\\_seeds: 2\\par\n" in tex
    assert tex.endswith("\\caption{Win rate (\\%)}\n\\label{tab:x}\n\\end{table}\n")
    assert "smallskip" not in art.latex_table(pretty, "C", "tab:y")


def test_write_table_writes_csv_markdown_and_latex(tmp_path):
    data = pd.DataFrame({"variant": ["dpo"], "win_rate": [51.25]})
    pretty = pd.DataFrame({"Method": ["DPO"], "Win rate": [art.fmt(51.25)]})
    out = tmp_path / "tables"
    got = art.write_table(
        data, pretty, out / "t.csv", out / "t.md", out / "t.tex", "Cap", "tab:t", ["a note"]
    )
    assert got is pretty
    pd.testing.assert_frame_equal(pd.read_csv(out / "t.csv"), data)
    assert (out / "t.md").read_text() == art.markdown_document(pretty, "Cap", ["a note"])
    assert (out / "t.tex").read_text() == art.latex_table(pretty, "Cap", "tab:t", ["a note"])


def test_save_figure_writes_png_and_pdf(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    art.save_figure(fig, tmp_path / "f" / "x.png", tmp_path / "f" / "x.pdf")
    plt.close(fig)
    assert (tmp_path / "f" / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f" / "x.pdf").read_bytes()[:5] == b"%PDF-"


def test_add_figure_notes_go_below_the_tick_labels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(range(3), [1, 2, 3])
    ax.set_xticks(range(3), ["a long tick label"] * 3, rotation=60)
    below = fig.get_tightbbox().y0 / fig.get_figheight()
    art.add_figure_notes(fig, ["local judge m: pipeline check, not comparable with GPT-4 numbers"])
    (note,) = fig.texts
    assert note.get_position()[1] < min(below, 0.0)
    assert "pipeline check" in note.get_text()
    art.add_figure_notes(fig, [])
    assert len(fig.texts) == 1
    art.save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    plt.close(fig)


def test_length_buckets_sit_on_one_side_of_zero_or_across_it():
    assert art.bucket_edges("lt_m64") == (float("-inf"), -64.0)
    assert art.bucket_edges("m64_m16") == (-64.0, -16.0)
    assert art.bucket_edges("m16_16") == (-16.0, 16.0)
    assert art.bucket_edges("16_64") == (16.0, 64.0)
    assert art.bucket_edges("ge_64") == (64.0, float("inf"))
