"""prefopt.judging.mt_bench: FastChat single-answer grading re-implemented without fastchat."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import EMBEDDED_DATA

from prefopt.judging import mt_bench

MT = EMBEDDED_DATA / "mt_bench"


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return mt_bench.load_questions(MT / "question.jsonl")


@pytest.fixture(scope="module")
def prompts() -> dict[str, dict]:
    return mt_bench.load_judge_prompts(MT / "judge_prompts.jsonl")


@pytest.fixture(scope="module")
def refs() -> dict[int, dict]:
    return mt_bench.load_model_answers(MT / "reference_answer" / "gpt-4.jsonl")


def _q(questions: list[dict], qid: int) -> dict:
    return next(q for q in questions if q["question_id"] == qid)


def test_data_shapes(questions, prompts, refs) -> None:
    assert len(questions) == 80 and len(refs) == 30
    counts = pd.Series([q["category"] for q in questions]).value_counts()
    assert set(counts.index) == set(mt_bench.CATEGORIES) and (counts == 10).all()
    ref_cats = {q["category"] for q in questions if q["question_id"] in refs}
    assert ref_cats == set(mt_bench.NEED_REF_CATS)
    assert {"single-v1", "single-math-v1", "single-v1-multi-turn"} <= set(prompts)
    assert mt_bench.load_questions(MT / "question.jsonl", 2, 5)[0]["question_id"] == 83


def test_fastchat_constants() -> None:
    assert mt_bench.FASTCHAT_TEMPERATURE == {
        "writing": 0.7,
        "roleplay": 0.7,
        "extraction": 0.0,
        "math": 0.0,
        "coding": 0.0,
        "reasoning": 0.0,
        "stem": 0.1,
        "humanities": 0.1,
    }
    assert mt_bench.NEED_REF_CATS == ("math", "reasoning", "coding")
    assert (mt_bench.JUDGE_TEMPERATURE, mt_bench.JUDGE_MAX_TOKENS) == (0.0, 2048)


@pytest.mark.parametrize(
    ("category", "turn", "name"),
    [
        ("writing", 1, "single-v1"),
        ("stem", 2, "single-v1-multi-turn"),
        ("math", 1, "single-math-v1"),
        ("reasoning", 2, "single-math-v1-multi-turn"),
        ("coding", 1, "single-math-v1"),
        ("extraction", 1, "single-v1"),
    ],
)
def test_prompt_name(category: str, turn: int, name: str) -> None:
    assert mt_bench.judge_prompt_name(category, turn) == name


def test_single_turn_general_prompt(questions, prompts) -> None:
    q = _q(questions, 81)
    answer = "My {braces} stay {literal} and [[3]] is just text."
    system, user, name = mt_bench.build_judge_prompt(q, [answer, "second"], 1, prompts)
    assert name == "single-v1" and system == "You are a helpful assistant."
    assert user.startswith("[Instruction]\nPlease act as an impartial judge")
    assert user.endswith(
        f"[Question]\n{q['turns'][0]}\n\n[The Start of Assistant's Answer]\n{answer}\n"
        "[The End of Assistant's Answer]"
    )
    assert "second" not in user


def test_multi_turn_general_prompt(questions, prompts) -> None:
    q = _q(questions, 81)
    record = {"question_id": 81, "choices": [{"index": 0, "turns": ["A1", "A2"]}]}
    system, user, name = mt_bench.build_judge_prompt(q, record, 2, prompts)
    assert name == "single-v1-multi-turn"
    assert system == prompts["single-v1-multi-turn"]["system_prompt"]
    assert "focus on the assistant's answer to the second user question" in system
    expected = (
        f"### User:\n{q['turns'][0]}\n\n### Assistant A:\nA1\n\n"
        f"### User:\n{q['turns'][1]}\n\n### Assistant A:\nA2\n\n"
    )
    assert expected in user


def test_math_prompts_use_reference(questions, prompts, refs) -> None:
    q = _q(questions, 111)
    ref = refs[111]
    r1, r2 = ref["choices"][0]["turns"]
    _, user1, name1 = mt_bench.build_judge_prompt(q, ["x", "y"], 1, prompts, ref)
    assert name1 == "single-math-v1"
    assert f"[The Start of Reference Answer]\n{r1}\n[The End of Reference Answer]" in user1
    assert r2 not in user1
    system2, user2, name2 = mt_bench.build_judge_prompt(q, ["x", "y"], 2, prompts, [r1, r2])
    assert name2 == "single-math-v1-multi-turn"
    assert f"### Reference answer:\n{r1}" in user2 and f"### Reference answer:\n{r2}" in user2
    assert system2 == prompts["single-math-v1-multi-turn"]["system_prompt"]


def test_reference_required_for_ref_categories(questions, prompts) -> None:
    for qid in (101, 111, 121):  # reasoning, math, coding
        with pytest.raises(ValueError, match="needs a reference"):
            mt_bench.build_judge_prompt(_q(questions, qid), ["x", "y"], 1, prompts)


def test_messages() -> None:
    assert mt_bench.judge_messages("S", "U") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
    ]


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("The answer is fine. Rating: [[7]]", 7.0),
        ("Rating: [[8.5]]", 8.5),
        ("Rating: [6]", 6.0),  # backup pattern
        ("[[10]] then [3]", 10.0),
        ("first [[7]] later [[2]]", 7.0),
        ("Rating: [[ 7 ]]", -1.0),
        ("Rating: 9/10", -1.0),
        ("Rating: [[07]]", 7.0),
        ("", -1.0),
        (None, -1.0),
        ("$ERROR$", -1.0),
    ],
)
def test_extract_rating(text, score) -> None:
    assert mt_bench.extract_rating(text) == score


def test_matches_follow_fastchat_order(questions) -> None:
    matches = list(mt_bench.iter_single_matches(questions))
    assert len(matches) == 160
    cats = [q["category"] in mt_bench.NEED_REF_CATS for q, _ in matches]
    turns = [t for _, t in matches]
    assert cats == [False] * 50 + [True] * 30 + [False] * 50 + [True] * 30
    assert turns == [1] * 80 + [2] * 80
    one_turn = [{"question_id": 1, "category": "writing", "turns": ["only"]}]
    assert [t for _, t in mt_bench.iter_single_matches(one_turn)] == [1]


def test_judgment_record_keys() -> None:
    """FastChat's keys in FastChat's order, then which model judged, which answered, and why
    none did."""
    rec = mt_bench.judgment_record(
        question_id=81,
        model="m",
        judge_model="gpt-4-0613",
        prompt_name="single-v1",
        user_prompt="u",
        judgment="Rating: [[5]]",
        score=5.0,
        turn=1,
        tstamp=1.5,
        served_model="gpt-4-0613",
    )
    assert tuple(rec) == mt_bench.JUDGMENT_KEYS + mt_bench.PROVENANCE_KEYS
    assert rec["judge"] == ["gpt-4-0613", "single-v1"] and rec["tstamp"] == 1.5
    assert (rec["judge_model"], rec["served_model"], rec["judge_error"]) == (
        "gpt-4-0613",
        "gpt-4-0613",
        None,
    )
    local = mt_bench.judgment_record(
        question_id=81,
        model="m",
        judge_model="smollm2-135m-instruct",
        prompt_name="single-v1",
        user_prompt="u",
        judgment="Rating: [[5]]",
        score=5.0,
        turn=1,
        judge_id="local",
    )
    assert local["judge"] == ["local", "single-v1"]
    assert local["judge_model"] == "smollm2-135m-instruct"


def _j(model: str, qid: int, turn: int, score: float, error: str | None = None) -> dict:
    return {"model": model, "question_id": qid, "turn": turn, "score": score, "judge_error": error}


def test_category_scores(questions) -> None:
    judgments = [
        _j("a", 81, 1, 8),
        _j("a", 81, 2, 6),
        _j("a", 82, 1, -1),  # failed rating: dropped
        _j("a", 82, 2, 10),
        _j("a", 111, 1, 2),  # math
        _j("a", 111, 2, 3),
        _j("a", 112, 1, -1, "HTTP 400 content_filter"),  # refused by the API: missing
        _j("b", 81, 1, 1),
    ]
    table = mt_bench.category_scores(judgments, questions)
    a = table[table["model"] == "a"].set_index("category")
    assert list(a.index) == ["writing", "math", "overall"]
    assert a.loc["writing", "score"] == pytest.approx(8.0)
    assert a.loc["writing", "score_turn1"] == pytest.approx(8.0)
    assert a.loc["writing", "score_turn2"] == pytest.approx(8.0)
    assert (a.loc["writing", "n_valid"], a.loc["writing", "n_failed"]) == (3, 1)
    assert a.loc["writing", "n_missing"] == 0
    assert a.loc["math", "score"] == pytest.approx(2.5)
    assert (a.loc["math", "n_failed"], a.loc["math", "n_missing"]) == (1, 1)
    assert (a.loc["overall", "n_failed"], a.loc["overall", "n_missing"]) == (2, 1)
    # FastChat show_result "Average": mean over all rows with score != -1
    df = pd.DataFrame(judgments)
    fastchat = df[df["score"] != -1].groupby("model")["score"].mean()
    assert a.loc["overall", "score"] == pytest.approx(fastchat["a"])
    b = table[table["model"] == "b"].set_index("category")
    assert b.loc["overall", "score"] == pytest.approx(fastchat["b"])


def test_category_scores_duplicates_and_unknown(questions) -> None:
    dup = [_j("a", 81, 1, 2), _j("a", 81, 1, 9)]
    table = mt_bench.category_scores(dup, questions)
    assert table.set_index("category").loc["overall", "score"] == 9
    with pytest.raises(ValueError, match="unknown question"):
        mt_bench.category_scores([_j("a", 999, 1, 5)], questions)
    assert mt_bench.category_scores([], questions).empty
