"""MT-Bench single-answer grading, re-implemented from FastChat's ``fastchat/llm_judge``.

Why not import FastChat: its ``llm_judge`` extra pins ``openai<1`` (conflicting with alpaca_eval)
and it picks chat templates from model paths. Only the judging logic is needed, and it is small:
prompt selection and formatting (``gen_judgment.make_judge_single`` and
``common.run_judge_single``), rating extraction (``common.one_score_pattern``), the judgment record
(``common.play_a_match_single``) and the score table (``show_result.display_result_single``).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from prefopt.runtime import read_jsonl

log = logging.getLogger(__name__)

#: Categories judged against a reference answer (FastChat ``NEED_REF_CATS``).
NEED_REF_CATS = ("math", "reasoning", "coding")
#: Generation temperature per category (FastChat ``common.temperature_config``).
FASTCHAT_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
#: Category order of the paper's radar charts (clockwise from the top).
CATEGORIES = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
#: Judge decoding used by FastChat's ``run_judge_single`` for OpenAI judges.
JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS = 2048
#: FastChat's failure output of ``chat_completion_openai`` after all retries.
API_ERROR_OUTPUT = "$ERROR$"

ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")

JUDGMENT_KEYS = (
    "question_id",
    "model",
    "judge",
    "user_prompt",
    "judgment",
    "score",
    "turn",
    "tstamp",
)
#: What we add after FastChat's keys (its readers ignore them): the model that was asked to
#: judge (the API model name, or the local judge's model slug), the model name the API says
#: answered (the local model's slug for the local judge), and why a judgment is missing (an
#: API error such as ``HTTP 400 content_filter``; None when the judge answered).
PROVENANCE_KEYS = ("judge_model", "served_model", "judge_error")
#: What a judgment graded several times adds (``judges.repeats`` > 1; prefopt.judging.api): the
#: k ratings (None for a repeat without one), how many repeats failed, each repeat's API error
#: kind (None when it answered) and each repeat's judgment text. ``score`` is their median.
REPEAT_KEYS = ("scores", "n_failed_repeats", "judge_errors", "judgments")


def load_questions(
    path: str | os.PathLike, begin: int | None = None, end: int | None = None
) -> list[dict[str, Any]]:
    """Questions from a FastChat ``question.jsonl`` (``begin:end`` slice as FastChat)."""
    return read_jsonl(path)[begin:end]


def load_judge_prompts(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Judge prompts from ``judge_prompts.jsonl``, keyed by ``name``."""
    return {rec["name"]: rec for rec in read_jsonl(path)}


def load_model_answers(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Answers (or reference answers) from one FastChat ``model_answer`` JSONL, by question_id."""
    return {rec["question_id"]: rec for rec in read_jsonl(path)}


def turns_of(answer: dict[str, Any] | Sequence[str]) -> list[str]:
    """The list of turns of a FastChat answer record (``choices[0].turns``) or a plain list."""
    if isinstance(answer, dict):
        return list(answer["choices"][0]["turns"])
    return list(answer)


def judge_prompt_name(category: str, turn: int) -> str:
    """Name of the FastChat prompt used for a category and turn (``make_judge_single``)."""
    if turn not in (1, 2):
        raise ValueError(f"turn must be 1 or 2, got {turn}")
    base = "single-math-v1" if category in NEED_REF_CATS else "single-v1"
    return base + ("-multi-turn" if turn == 2 else "")


def build_judge_prompt(
    question: dict[str, Any],
    answer_turns: Sequence[str] | dict[str, Any],
    turn: int,
    judge_prompts: dict[str, dict[str, Any]],
    reference: Sequence[str] | dict[str, Any] | None = None,
) -> tuple[str, str, str]:
    """Return ``(system_prompt, user_prompt, prompt_name)`` exactly as FastChat formats them.

    Reference-based categories (math, reasoning, coding) need ``reference`` (the judge model's
    reference answer record or its turns); FastChat fails on them without one, and so do we.
    """
    category = question["category"]
    name = judge_prompt_name(category, turn)
    template = judge_prompts[name]
    turns = turns_of(answer_turns)
    kwargs: dict[str, str] = {}
    if category in NEED_REF_CATS:
        if reference is None:
            raise ValueError(
                f"question {question['question_id']} ({category}) needs a reference answer"
            )
        ref = turns_of(reference)
        kwargs["ref_answer_1"] = ref[0]
        kwargs["ref_answer_2"] = ref[1]
    if turn == 2:
        user_prompt = template["prompt_template"].format(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=turns[0],
            answer_2=turns[1],
            **kwargs,
        )
    else:
        user_prompt = template["prompt_template"].format(
            question=question["turns"][0], answer=turns[0], **kwargs
        )
    return template["system_prompt"], user_prompt, name


def judge_messages(system_prompt: str, user_prompt: str) -> list[dict[str, str]]:
    """OpenAI chat messages as FastChat's ``conv.to_openai_api_messages()`` builds them."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_prompt},
    ]


def extract_rating(judgment_text: str | None) -> float:
    """Rating from a judgment: ``[[x]]``, else ``[x]``, else -1 (FastChat ``run_judge_single``).

    The first match wins, as FastChat's ``re.search``.
    """
    if not judgment_text:
        return -1.0
    match = re.search(ONE_SCORE_PATTERN, judgment_text)
    if not match:
        match = re.search(ONE_SCORE_PATTERN_BACKUP, judgment_text)
    if not match:
        return -1.0
    # FastChat uses ast.literal_eval, which gives the same number for every string the regex
    # admits except those with a leading zero ("07"), where it raises; float() accepts them.
    return float(match.groups()[0])


def median_score(scores: Sequence[float | None]) -> float:
    """The score of a turn graded several times: the median of its valid ratings (>= 0), as
    FastChat's maintainers recommend for non-deterministic GPT-4 judges; -1 (FastChat's failed
    judgment) when no repeat gave one. A single rating is returned as it is."""
    valid = [float(x) for x in scores if x is not None and float(x) >= 0]
    return float(np.median(valid)) if valid else -1.0


def judgment_record(
    *,
    question_id: int,
    model: str,
    judge_model: str,
    prompt_name: str,
    user_prompt: str,
    judgment: str,
    score: float,
    turn: int,
    tstamp: float | None = None,
    judge_id: str | None = None,
    served_model: str | None = None,
    judge_error: str | None = None,
) -> dict[str, Any]:
    """One FastChat ``model_judgment/<judge>_single.jsonl`` row (``play_a_match_single``), then
    :data:`PROVENANCE_KEYS`. ``judge`` is ``[judge_id or judge_model, prompt_name]`` as in
    FastChat; the local judge passes ``judge_id="local"`` and its model's slug as
    ``judge_model``."""
    return {
        "question_id": question_id,
        "model": model,
        "judge": [judge_id or judge_model, prompt_name],
        "user_prompt": user_prompt,
        "judgment": judgment,
        "score": score,
        "turn": turn,
        "tstamp": time.time() if tstamp is None else tstamp,
        "judge_model": judge_model,
        "served_model": served_model,
        "judge_error": judge_error,
    }


def iter_single_matches(
    questions: Iterable[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], int]]:
    """(question, turn) pairs in FastChat's order: default t1, math t1, default t2, math t2.

    Turn 2 is skipped for questions that do not have exactly two turns, as FastChat does.
    """
    questions = list(questions)
    default = [q for q in questions if q["category"] not in NEED_REF_CATS]
    math_qs = [q for q in questions if q["category"] in NEED_REF_CATS]
    for group, turn in ((default, 1), (math_qs, 1), (default, 2), (math_qs, 2)):
        for q in group:
            if turn == 2 and len(q["turns"]) != 2:
                continue
            yield q, turn


def category_scores(
    judgments: Iterable[dict[str, Any]] | pd.DataFrame,
    questions: Iterable[dict[str, Any]],
) -> pd.DataFrame:
    """Per-category and overall MT-Bench scores for each judged model.

    As FastChat's ``show_result`` (and the authors' radar notebook), failed ratings (-1) are
    dropped and the remaining scores averaged over both turns; ``overall`` is the mean of all
    valid scores of a model. Columns: ``model, category, score, score_turn1, score_turn2,
    n_valid, n_failed, n_missing``: ``n_failed`` counts every dropped judgment, ``n_missing``
    those of them the API refused to answer (``judge_error`` set; the others had no readable
    rating). A judgment repeated for the same (model, question, turn) keeps the last one, so an
    appended-to file cannot double-count.
    """
    df = judgments.copy() if isinstance(judgments, pd.DataFrame) else pd.DataFrame(list(judgments))
    cats = {q["question_id"]: q["category"] for q in questions}
    if df.empty:
        return pd.DataFrame(
            columns=[
                "model",
                "category",
                "score",
                "score_turn1",
                "score_turn2",
                "n_valid",
                "n_failed",
                "n_missing",
            ]
        )
    before = len(df)
    df = df.drop_duplicates(subset=["model", "question_id", "turn"], keep="last")
    if len(df) < before:
        log.warning("dropped %d duplicate judgments (kept the last of each)", before - len(df))
    df["category"] = df["question_id"].map(cats)
    if df["category"].isna().any():
        missing = sorted(df.loc[df["category"].isna(), "question_id"].unique().tolist())
        raise ValueError(f"judgments for unknown question ids: {missing}")
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df["valid"] = df["score"] >= 0
    errors = df["judge_error"] if "judge_error" in df.columns else pd.Series(None, index=df.index)
    df["missing"] = errors.notna() & ~df["valid"]

    def summarise(part: pd.DataFrame) -> dict[str, Any]:
        ok = part[part["valid"]]
        return {
            "score": ok["score"].mean() if len(ok) else float("nan"),
            "score_turn1": ok.loc[ok["turn"] == 1, "score"].mean(),
            "score_turn2": ok.loc[ok["turn"] == 2, "score"].mean(),
            "n_valid": int(len(ok)),
            "n_failed": int((~part["valid"]).sum()),
            "n_missing": int(part["missing"].sum()),
        }

    present = set(df["category"])
    order = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    rows: list[dict[str, Any]] = []
    for model, mdf in df.groupby("model", sort=True):
        for cat in order:
            part = mdf[mdf["category"] == cat]
            if len(part):
                rows.append({"model": model, "category": cat, **summarise(part)})
        rows.append({"model": model, "category": "overall", **summarise(mdf)})
    return pd.DataFrame(rows)
