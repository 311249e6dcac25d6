"""prefopt.judging.authors_outputs: the pairs drawn from the authors' files, the checks before any
request, and the score row's numbers (alpaca_eval's metric code, the calibration statistics)."""

from __future__ import annotations

import pandas as pd
import pytest

from prefopt.judging import authors_outputs as ao

TABLE1 = pd.read_csv("workflow/resources/paper/table1.csv")


def rows(n: int, prefix: str = "") -> list[dict]:
    return [
        {
            "instruction": f"instruction {i}",
            "output_1": f"baseline {i}",
            "output_2": f"{prefix}model {i}",
            "annotator": "alpaca_eval_gpt4_turbo_fn",
            "preference": 2.0 if i % 3 == 0 else 1.0,
        }
        for i in range(n)
    ]


def test_annotated_rows_are_the_seven_with_outputs():
    got = ao.annotated_rows(TABLE1)["variant"].tolist()
    assert sorted(got) == sorted(
        ["apo_hinge_zero", "dpo_hinge", "dpo", "apo_hinge_softplus", "apo_zero", "base", "exo"]
    )


def test_the_draw_is_the_same_instructions_for_every_row_in_file_order():
    a = ao.authors_pairs(rows(50, "a "), "alpaca_eval_DPO", max_items=7)
    b = ao.authors_pairs(rows(50, "b "), "alpaca_eval_EXO", max_items=7)
    assert [p["instruction"] for p in a] == [p["instruction"] for p in b]
    assert [p["row"] for p in a] == sorted(p["row"] for p in a) and len(a) == 7
    assert [p["row"] for p in a] != list(range(7))  # a draw, not the first rows
    assert len(ao.authors_pairs(rows(50), "f")) == 50
    assert a[0]["reference_preference"] == rows(50)[a[0]["row"]]["preference"]
    assert a[0]["source"] == "alpaca_eval_DPO"


def test_an_empty_answer_is_judged_but_a_malformed_row_stops_naming_row_and_key():
    ok = rows(3)
    ok[1]["output_2"] = ""
    assert ao.authors_pairs(ok, "f")[1]["output_2"] == ""
    bad = rows(3)
    bad[2]["output_1"] = None
    with pytest.raises(ValueError, match=r"f/annotations.json row 2: 'output_1' is not a text"):
        ao.authors_pairs(bad, "f")
    bad = rows(3)
    bad[0]["instruction"] = " "
    with pytest.raises(ValueError, match=r"row 0: 'instruction' is missing or empty"):
        ao.authors_pairs(bad, "f")


def test_baseline_texts_are_matched_by_instruction():
    pairs = ao.authors_pairs(rows(4), "f")
    reference = [{"instruction": f"instruction {i}", "output": f"baseline {i}"} for i in (0, 1)]
    reference.append({"instruction": "instruction 2", "output": "something else"})
    assert ao.matching_baseline_outputs(pairs, reference) == (2, 3)


def records(judge_prefs, ref_prefs):
    return [
        {
            "source": "alpaca_eval_DPO",
            "instruction": f"instruction {i}",
            "output_1": "b" * 10,
            "output_2": "m" * (5 + 10 * (i % 2)),
            "reference_annotator": "alpaca_eval_gpt4_turbo_fn",
            "reference_preference": r,
            "preference": j,
            "judge_model": "gpt-4.1-2025-04-14",
        }
        for i, (j, r) in enumerate(zip(judge_prefs, ref_prefs, strict=True))
    ]


def test_judged_row_numbers():
    t1 = TABLE1.set_index("variant").loc["dpo"].to_dict() | {"variant": "dpo"}
    row = ao.judged_row(
        t1,
        records([2.0, 2.0, 1.0, 1.5, None], [2.0, 1.0, 1.0, 2.0, 1.0]),
        judge="j",
        judge_label="J",
        rows_in_file=5,
    )
    assert row["status"] == "judged" and row["items"] == 5
    # alpaca_eval: nulls dropped, a draw counts a half: (1 + 1 + 0 + 0.5) / 4
    assert row["rejudged_win_rate"] == pytest.approx(62.5)
    assert row["reference_win_rate"] == pytest.approx(40.0)
    assert row["rejudged_failures"] == 1 and row["reference_failures"] == 0
    # both decided: rows 0, 1, 2 -> agree on 0 and 2
    assert (row["agreement"], row["agreement_pairs"]) == (pytest.approx(2 / 3), 3)
    assert 0 < row["agreement_ci_low"] < 2 / 3 < row["agreement_ci_high"] < 1
    assert row["paper_win_rate"] == pytest.approx(34.41)
    assert "5 of the 805" in row["lc_missing_reason"]
    table = ao.score_table([row, ao.unjudged_row(t1 | {"variant": "x"}, "why")])
    assert list(table.columns) == list(ao.COLUMNS)
    assert str(table["items"].dtype) == "Int64" and pd.isna(table["items"][1])


def test_why_a_row_is_not_judged():
    aot = TABLE1.set_index("variant").loc["aot"].to_dict()
    dpo = TABLE1.set_index("variant").loc["dpo"].to_dict()
    assert "leaderboard line only" in ao.not_judged_reason(aot, "dir")
    assert "not available" in ao.not_judged_reason(dpo, None)
    assert "authors_outputs.variants" in ao.not_judged_reason(dpo, "dir")


def test_the_footnote_reports_the_computed_agreement_or_why_none():
    table = pd.DataFrame(
        {
            "variant": ["dpo", "aot"],
            "paper_label": ["DPO", "AOT"],
            "status": ["judged", "the authors published a leaderboard line only"],
            "items": [805, None],
            "agreement": [0.625, None],
            "baseline_outputs_matching_run_reference": ["20 of 805", None],
        }
    ).set_index("variant")
    note = ao.authors_outputs_note(table, "judge J")
    assert "805 instructions" in note and "DPO 62.5 %" in note and "20 of 805" in note
    none = ao.authors_outputs_note(table.iloc[1:], "judge J")
    assert none.startswith("Paper's outputs, our judge: not computed in this run (the authors")
