"""prefopt.audit: the paper's Table 1 against the authors' published AlpacaEval artefacts."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports alpaca_eval / huggingface_hub

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from prefopt import audit

ROOT = Path(__file__).resolve().parents[2]
AUTHORS = Path("/work/shared/data/authors_alpaca_eval")
TABLE1 = ROOT / "workflow" / "resources" / "paper" / "table1.csv"
COMPARED = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total")
COMPARED += ("discrete_win_rate", "avg_length")

pytestmark = pytest.mark.skipif(not AUTHORS.is_dir(), reason="shared data not mounted")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return audit.audit_table(AUTHORS, TABLE1)


def _row(table: pd.DataFrame, variant: str) -> dict:
    return table.set_index("variant").loc[variant].to_dict()


def test_one_row_per_table1_row_in_order(table: pd.DataFrame) -> None:
    assert table["variant"].tolist() == pd.read_csv(TABLE1)["variant"].tolist()
    assert list(table.columns) == audit.AUDIT_COLUMNS


def test_recomputed_equals_authors_leaderboard_to_two_decimals(table: pd.DataFrame) -> None:
    with_ann = table[table["has_annotations"]]
    assert len(with_ann) == 7
    for rec in with_ann.to_dict(orient="records"):
        for f in COMPARED:
            assert round(float(rec[f"re_{f}"]), 2) == round(float(rec[f"lb_{f}"]), 2), (
                rec["variant"],
                f,
            )
        assert rec["recomputed_matches_leaderboard"]


def test_rows_without_annotations(table: pd.DataFrame) -> None:
    for variant in ("aot", "margin_sigmoid"):
        rec = _row(table, variant)
        assert not rec["has_annotations"]
        assert pd.isna(rec["recomputed_matches_leaderboard"])
        assert pd.isna(rec["re_win_rate"])
        assert "no annotations published" in rec["note"]


def test_aot_counts_flagged(table: pd.DataFrame) -> None:
    rec = _row(table, "aot")
    assert not rec["leaderboard_counts_consistent"]
    assert "859 != n_total 774" in rec["note"]
    assert _row(table, "margin_sigmoid")["leaderboard_counts_consistent"]


def test_softplus_discrepancy_and_other_rows_match_paper(table: pd.DataFrame) -> None:
    soft = _row(table, "apo_hinge_softplus")
    assert soft["recomputed_matches_leaderboard"]
    assert not soft["leaderboard_matches_paper_win_rate"]
    assert not soft["leaderboard_matches_paper_lc_win_rate"]
    assert "34.10 / 12.67" in soft["note"] and "32.57 / 13.53" in soft["note"]
    others = table[table["variant"] != "apo_hinge_softplus"]
    assert others["leaderboard_matches_paper_win_rate"].all()
    assert others["leaderboard_matches_paper_lc_win_rate"].all()
    assert others["leaderboard_se_matches_figure"].all()


def test_null_preferences_and_dpo_name_noted(table: pd.DataFrame) -> None:
    apo = _row(table, "apo_zero")
    assert apo["n_null_preference"] == 29 and apo["re_n_total"] == 776
    assert "29 judge failures" in apo["note"]
    assert "'Qwen2.5-0.5B'" in _row(table, "dpo")["note"]


def _mini_authors(tmp_path: Path, leaderboard_win_rate: float) -> tuple[Path, Path]:
    """One folder whose leaderboard.csv we control, and a one-row Table 1 pointing at it."""
    src = AUTHORS / "alpaca_eval_Original"
    folder = tmp_path / "authors" / "alpaca_eval_X"
    folder.mkdir(parents=True)
    (folder / "annotations.json").write_bytes((src / "annotations.json").read_bytes())
    lb = pd.read_csv(src / "leaderboard.csv", index_col=0)
    lb["win_rate"] = leaderboard_win_rate
    lb.to_csv(folder / "leaderboard.csv")
    t1 = tmp_path / "table1.csv"
    pd.DataFrame(
        [
            {
                "variant": "x",
                "paper_label": "X",
                "win_rate": 32.92,
                "lc_win_rate": 16.39,
                "std_error_from_figure": 1.65,
                "authors_folder": "alpaca_eval_X",
                "source": "test",
            }
        ]
    ).to_csv(t1, index=False)
    return tmp_path / "authors", t1


def test_mismatch_is_detected(tmp_path: Path) -> None:
    authors, t1 = _mini_authors(tmp_path, leaderboard_win_rate=33.0)
    rec = audit.audit_table(authors, t1).iloc[0]
    assert not rec["recomputed_matches_leaderboard"]
    assert not rec["leaderboard_matches_paper_win_rate"]
    assert "differ from the published leaderboard.csv" in rec["note"]


def test_write_audit_outputs(tmp_path: Path) -> None:
    out = audit.write_audit(
        AUTHORS, TABLE1, tmp_path / "t" / "audit.csv", tmp_path / "t" / "audit.md"
    )
    back = pd.read_csv(tmp_path / "t" / "audit.csv")
    assert len(back) == len(out) == 9
    assert back.loc[back["variant"] == "base", "re_n_total"].item() == 805
    md = (tmp_path / "t" / "audit.md").read_text()
    for label in out["paper_label"]:
        assert f"| {label} |" in md
    assert "**no**" in md  # the softplus row


def test_snakemake_script(tmp_path: Path) -> None:
    """The thin script wires snakemake.input/output/log to write_audit (run in a subprocess)."""
    driver = textwrap.dedent(
        f"""
        import runpy, types
        class NS(types.SimpleNamespace):
            def __getitem__(self, i):
                return list(vars(self).values())[i]
        sm = NS(
            input=NS(authors_dir={str(AUTHORS)!r}, table1={str(TABLE1)!r}),
            output=NS(table={str(tmp_path / "a.csv")!r}, markdown={str(tmp_path / "a.md")!r}),
            log=[{str(tmp_path / "a.log")!r}],
        )
        runpy.run_path({str(ROOT / "workflow" / "scripts" / "audit_paper.py")!r},
                       init_globals={{"snakemake": sm}})
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-c", driver], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "a.csv")) == 9
    assert (tmp_path / "a.md").read_text().startswith("# Audit")
    assert "recomputed = leaderboard for 7 of 7" in (tmp_path / "a.log").read_text()
    json.dumps(pd.read_csv(tmp_path / "a.csv").to_dict(orient="records"))
