"""prefopt.judging.win_rates against published alpaca_eval leaderboards (authors, tatsu-lab),
offline."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports alpaca_eval / huggingface_hub

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import FIXTURES, tatsu_annotations

from prefopt.judging import win_rates

#: Published per-example judgments of tatsu-lab's leaderboard models (lengths + preferences).
TATSU = FIXTURES / "alpaca_eval_annotations"
#: The paper authors' folders (only in a full mirror: their repository has no licence).
AUTHOR_FOLDERS = [
    "alpaca_eval_APO",
    "alpaca_eval_APO_hinge_softplus_beta",
    "alpaca_eval_APO_zero_hinge",
    "alpaca_eval_DPO",
    "alpaca_eval_DPO_hinge",
    "alpaca_eval_EXO",
    "alpaca_eval_Original",
]
INT_FIELDS = ("n_wins", "n_wins_base", "n_draws", "n_total", "avg_length")
FLOAT_FIELDS = ("win_rate", "standard_error", "discrete_win_rate")


def _assert_matches(board: dict, row: pd.Series) -> None:
    for f in FLOAT_FIELDS:
        assert board[f] == pytest.approx(float(row[f]), rel=1e-9, abs=1e-9), f
    for f in INT_FIELDS:
        assert board[f] == int(row[f]), f


@pytest.mark.mirror
@pytest.mark.parametrize("folder", AUTHOR_FOLDERS)
def test_recomputes_authors_leaderboard(mirror: Path, folder: str) -> None:
    authors = mirror / "authors_alpaca_eval"
    annotations = json.loads((authors / folder / "annotations.json").read_text())
    lb = pd.read_csv(authors / folder / "leaderboard.csv", index_col=0).iloc[0]
    board = win_rates.alpaca_eval_leaderboard(annotations)
    _assert_matches(board, lb)
    assert board["length_controlled_winrate"] is None
    assert board["lc_standard_error"] is None
    assert "df_gamed.csv" in board["lc_missing_reason"]


@pytest.mark.parametrize(
    ("model", "annotator"),
    [
        ("phi-2-sft", "alpaca_eval_gpt4"),
        ("phi-2-dpo", "alpaca_eval_gpt4"),
        ("zephyr-7b-beta", "alpaca_eval_gpt4"),
        ("phi-2-sft", "weighted_alpaca_eval_gpt4_turbo"),
    ],
)
def test_recomputes_tatsu_lab_leaderboards(model: str, annotator: str) -> None:
    """Covers a 0.0 (old-style draw) preference (zephyr) and continuous preferences (weighted)."""
    board = win_rates.alpaca_eval_leaderboard(tatsu_annotations(model, annotator))
    boards = pd.read_csv(TATSU / "leaderboards.csv").set_index(["model", "annotator"])
    _assert_matches(board, boards.loc[(model, annotator)])


def _toy(prefs: list, lengths: list[int]) -> list[dict]:
    return [
        {
            "instruction": f"q{i}",
            "dataset": "toy",
            "output_1": "r" * 7,
            "generator_1": "ref",
            "output_2": "x" * n,
            "generator_2": "model",
            "annotator": "toy",
            "preference": p,
        }
        for i, (p, n) in enumerate(zip(prefs, lengths, strict=True))
    ]


def test_null_preference_dropped_but_length_over_all_outputs() -> None:
    board = win_rates.alpaca_eval_leaderboard(_toy([2.0, None, 1.0, 1.5], [10, 21, 30, 40]))
    assert board["n_total"] == 3
    assert (board["n_wins"], board["n_wins_base"], board["n_draws"]) == (1, 1, 1)
    assert board["win_rate"] == pytest.approx(50.0)
    assert board["avg_length"] == int((10 + 21 + 30 + 40) / 4)  # 25, truncated as alpaca_eval


def test_old_style_zero_counts_as_draw() -> None:
    board = win_rates.alpaca_eval_leaderboard(_toy([0, 2, 2, 1], [1, 1, 1, 1]))
    assert board["n_draws"] == 1
    assert board["win_rate"] == pytest.approx((0.5 + 1 + 1 + 0) / 4 * 100)


def test_leaderboard_keys_and_plain_types() -> None:
    board = win_rates.alpaca_eval_leaderboard(pd.DataFrame(_toy([2, 1, 2], [3, 4, 5])))
    assert tuple(board) == win_rates.LEADERBOARD_KEYS
    assert all(not isinstance(v, np.generic) for v in board.values())
    json.dumps(board)  # serialisable as is


def test_lc_missing_is_reported_not_approximated(
    caplog: pytest.LogCaptureFixture, tmp_path, monkeypatch
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.chdir(tmp_path)  # the repository root under Snakemake
    mirror = tmp_path / "workflow" / "resources" / "data"
    board = win_rates.alpaca_eval_leaderboard(_toy([2, 1], [3, 4]), lc_assets_dir=mirror)
    assert board["length_controlled_winrate"] is None and board["lc_standard_error"] is None
    reason = board["lc_missing_reason"]
    assert "are not in workflow/resources/data;" in reason  # relative to the repository
    assert str(tmp_path) not in reason and "df_gamed.csv" in reason
    assert reason in caplog.text and "LC win rate not computed" in caplog.text
    assert "df_gamed.csv" in win_rates.alpaca_eval_leaderboard(_toy([2], [3]))["lc_missing_reason"]


def test_shown_path_never_shows_an_absolute_path(tmp_path) -> None:
    repo = tmp_path / "repo"
    assert win_rates.shown_path(repo / "a" / "b", root=repo) == "a/b"
    assert win_rates.shown_path(repo, root=repo) == "."
    assert win_rates.shown_path(tmp_path / "mirror" / "alpaca_eval_lc", root=repo) == (
        "…/alpaca_eval_lc"
    )
    assert win_rates.shown_path("/", root=repo) == "…"


def _synthetic_df_gamed(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "model": model,
            "index": i,
            "instruction_difficulty": float(np.sin(i)),
            "preference": float(rng.random()),
            "std_delta_len": float(rng.normal()),
            "not_gamed_baseline": False,
        }
        for model in ("gamed_verbose", "gamed_concise")
        for i in range(n)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-learn 1.9 deprecations in the GLM
@pytest.mark.parametrize("layout", ["mirror_root", "lc_dir"])
def test_lc_uses_local_mirror_like_alpaca_eval(tmp_path: Path, layout: str, monkeypatch) -> None:
    """With a (synthetic) mirror, LC equals alpaca_eval's own GLM fed the same local file."""
    from alpaca_eval.metrics import glm_winrate

    csv = tmp_path / "alpaca_eval_lc" / "df_gamed.csv"
    _synthetic_df_gamed(csv, 805)
    ann = tatsu_annotations("phi-2-sft", "alpaca_eval_gpt4")
    original = glm_winrate.hf_hub_download
    assets = tmp_path if layout == "mirror_root" else csv.parent
    board = win_rates.alpaca_eval_leaderboard(ann, lc_assets_dir=assets)
    assert glm_winrate.hf_hub_download is original  # redirect undone

    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda *a, **k: str(csv))
    expected = glm_winrate.get_length_controlled_winrate(
        pd.DataFrame(ann), save_weights_dir=None, is_add_glm_preference_inplace=False
    )
    assert board["lc_missing_reason"] is None
    assert board["length_controlled_winrate"] == pytest.approx(
        expected["length_controlled_winrate"], rel=1e-12
    )
    assert board["lc_standard_error"] == pytest.approx(expected["lc_standard_error"], abs=1e-12)
    assert board["win_rate"] == pytest.approx(68.53233830845771)


def test_redirect_refuses_other_files(tmp_path: Path) -> None:
    _synthetic_df_gamed(tmp_path / "df_gamed.csv", 3)
    from alpaca_eval.metrics import glm_winrate

    with win_rates.redirect_hub_downloads(tmp_path):
        path = glm_winrate.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="df_gamed.csv")
        assert Path(path) == tmp_path / "df_gamed.csv"
        with pytest.raises(FileNotFoundError):
            glm_winrate.hf_hub_download(repo_id="tatsu-lab/alpaca_eval", filename="other.csv")
        with pytest.raises(FileNotFoundError):  # listed asset, but not mirrored
            glm_winrate.hf_hub_download(
                repo_id="tatsu-lab/alpaca_eval", filename="instruction_difficulty.csv"
            )


def test_per_prompt_table() -> None:
    table = win_rates.per_prompt_table(_toy([2.0, None, 1.5], [3, 5, 8]))
    assert list(table.columns) == ["index", "instruction", "dataset", "preference", "output_length"]
    assert table["index"].tolist() == [0, 1, 2]
    assert table["output_length"].tolist() == [3, 5, 8]
    assert table["preference"].iloc[0] == 2.0 and math.isnan(table["preference"].iloc[1])
    assert table["dataset"].unique().tolist() == ["toy"]


def test_per_prompt_table_consistent_with_leaderboard() -> None:
    ann = tatsu_annotations("phi-2-dpo", "alpaca_eval_gpt4")
    table = win_rates.per_prompt_table(ann)
    board = win_rates.alpaca_eval_leaderboard(ann)
    assert len(table) == 805
    assert int(table["output_length"].mean()) == board["avg_length"]
    assert table["preference"].notna().sum() == board["n_total"]
    assert ((table["preference"] - 1).mean() * 100) == pytest.approx(board["win_rate"])
