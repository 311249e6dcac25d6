"""prefopt.artifacts: the helpers every artifact notebook imports (tables, judges, statistics).

Fast and without papermill: tests/unit/test_notebooks.py runs the notebooks themselves.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prefopt import artifacts as art
from prefopt import mt_bench
from prefopt.judging import LOCAL_JUDGE

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


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706204736),
        (0.975, 2, 4.302652730),
        (0.975, 10, 2.228138852),
        (0.95, 4, 2.131846786),
    ],
)
def test_t_quantile_numeric_matches_tables(p, df, expected):
    assert art.t_quantile_numeric(p, df) == pytest.approx(expected, abs=1e-6)


def test_t_quantile_uses_the_fallback_without_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)  # `from scipy import stats` raises ImportError
    assert art.t_quantile(0.975, 3) == art.t_quantile_numeric(0.975, 3)
    assert art.t_quantile(0.975, 3) == pytest.approx(3.182446305, abs=1e-6)


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
    from prefopt.diagnostics import DIAGNOSTIC_COLUMNS, bucket_labels

    assert art.length_buckets(DIAGNOSTIC_COLUMNS) == bucket_labels()
    cols = ["step", "n_pairs_bucket_lt_0", "n_active_bucket_lt_0", "n_pairs_bucket_ge_0"]
    assert art.length_buckets(cols) == ["lt_0"]  # a bucket without active counts is left out
    assert art.length_buckets(["step", "loss"]) == []


def test_bucket_text():
    from prefopt.diagnostics import bucket_labels

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
