"""Preference rows are schema-checked with counted rejects; eval subsets keep benchmark order."""

from __future__ import annotations

import pytest
from helpers import shipped_alpaca_eval

from prefopt.data.prepare import check_pairs, read_jsonl, subset_alpaca_eval, subset_mt_bench


def test_rejects_are_counted_by_reason():
    rows = [
        {"prompt": "p1", "chosen": "good", "rejected": "bad"},
        {"prompt": "", "chosen": "good", "rejected": "bad"},
        {"prompt": "p3", "chosen": None, "rejected": "bad"},
        {"prompt": "p4", "chosen": "same", "rejected": "same"},
        {"prompt": "p5", "chosen": "   ", "rejected": "bad"},
        {"prompt": "p6", "chosen": "good", "rejected": "bad"},
    ]
    kept, report = check_pairs(rows)
    assert [r["prompt"] for r in kept] == ["p1", "p6"]
    assert report["rows_rejected"] == 4
    assert report["rejected_by_reason"] == {
        "prompt is empty": 1,
        "chosen is not a string": 1,
        "chosen equals rejected": 1,
        "chosen is empty": 1,
    }
    assert report["rejected_row_examples"]["prompt is empty"] == [1]


def test_trl_message_lists_are_flattened_and_ids_are_stable():
    row = {
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a+"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a-"}],
        "score_chosen": 8.0,
        "score_rejected": 3.0,
    }
    kept, _ = check_pairs([row])
    assert (kept[0]["prompt"], kept[0]["chosen"], kept[0]["rejected"]) == ("q", "a+", "a-")
    assert check_pairs([row])[0][0]["pair_id"] == kept[0]["pair_id"]


def test_max_pairs_and_all_invalid(embedded_data):
    rows = read_jsonl(embedded_data / "ultrafeedback_binarized" / "train.jsonl")
    kept, report = check_pairs(rows, max_pairs=16)
    assert len(kept) == 16 and report["rows_read"] == 256
    assert [r["source_index"] for r in kept] == list(range(16))  # the file's own order
    with pytest.raises(ValueError, match="no valid preference pairs"):
        check_pairs([{"prompt": "", "chosen": "x", "rejected": "y"}])


def test_eval_subsets(embedded_data):
    ae = shipped_alpaca_eval(embedded_data)
    assert len(subset_alpaca_eval(ae, 4)) == 4 and len(subset_alpaca_eval(ae, None)) == 805
    questions = read_jsonl(embedded_data / "mt_bench" / "question.jsonl")
    sub = subset_mt_bench(questions, 2)
    assert len(sub) == 16 and len({q["category"] for q in sub}) == 8
    with pytest.raises(ValueError, match="bad category"):
        subset_mt_bench([{"question_id": 1, "category": "poetry", "turns": ["a", "b"]}], 1)


def test_alpaca_eval_1_reference_is_the_baseline_the_ae1_judge_saw(embedded_data):
    """The shipped source is alpaca_eval's own AE1 annotations: the reference is each row's
    output_1 (text-davinci-003), in the benchmark's order; a file of another baseline, with a
    repeated instruction or not the 805 rows stops, naming the row."""
    from prefopt.data.download import ALPACA_EVAL_REFERENCE
    from prefopt.data.prepare import alpaca_eval_1_reference
    from prefopt.runtime import read_json

    rows = read_json(embedded_data / ALPACA_EVAL_REFERENCE)
    ref = alpaca_eval_1_reference(rows)
    assert [r["output"] for r in ref] == [r["output_1"] for r in rows]
    assert {r["generator"] for r in ref} == {"text_davinci_003"}
    assert len({r["instruction"] for r in ref}) == 805
    other = [dict(r) for r in rows]
    other[3]["generator_1"] = "gpt4_1106_preview"
    with pytest.raises(ValueError, match="row 3: generator_1 is 'gpt4_1106_preview'"):
        alpaca_eval_1_reference(other)
    repeated = [dict(r) for r in rows]
    repeated[9]["instruction"] = repeated[2]["instruction"]
    with pytest.raises(ValueError, match="row 9: instruction repeated"):
        alpaca_eval_1_reference(repeated)
    with pytest.raises(ValueError, match="804 rows, not the benchmark's 805"):
        alpaca_eval_1_reference(rows[:-1])
