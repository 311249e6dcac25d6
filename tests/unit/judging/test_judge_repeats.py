"""judges.repeats: every item judged k times by an API judge (judge noise).

Against the local stand-in of the OpenAI API (``standins.FakeOpenAI`` on 127.0.0.1): the cache
keys (repeat 1 keeps the key of a single judgment, so existing caches still hit), resuming a run
cut short with k = 3, the mean (AlpacaEval) and median (MT-Bench) of the k verdicts with failed
repeats left out and counted, the config check that refuses repeats with the local judge, and the
preflight's request count.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EMBEDDED_DATA, REPO
from standins import FakeOpenAI, cache_lines, judge_items, toy_alpaca_eval_pairs

from prefopt.config import ConfigError, validate_config
from prefopt.judging import api, mt_bench
from prefopt.judging.preflight import cost_text, request_count
from prefopt.judging.registry import judge_spec

MT = EMBEDDED_DATA / "mt_bench"


def make_client(server: FakeOpenAI, cache: Path, **kw: Any) -> api.ApiJudgeClient:
    opts: dict[str, Any] = {
        "model": "fake-judge",
        "base_url": server.base_url,
        "cache_path": cache,
        "api_key_env": "PREFOPT_TEST_KEY",
        "max_retries": 2,
        "backoff_base": 0.01,
        "timeout": 1.0,
    }
    opts.update(kw)
    return api.ApiJudgeClient(sleep=lambda s: time.sleep(min(s, 0.02)), **opts)


class VaryingJudge(FakeOpenAI):
    """The stand-in, with answers that change from one request of an item to the next, as a
    non-deterministic judge's do: ``ratings[item][n]`` is the MT-Bench rating of the item's
    (n+1)-th request; ``flips[item][n]`` inverts the AlpacaEval ranking of that request."""

    def __init__(self, *args: Any, ratings=None, flips=None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ratings = dict(ratings or {})
        self.flips = dict(flips or {})

    def completion(self, body: dict[str, Any], item: str) -> dict[str, Any]:
        out = super().completion(body, item)
        n = self.requests[item] - 1  # counted before the answer is built
        message = out["choices"][0]["message"]
        if item in self.ratings:
            message["content"] = f"Judged {item}. Rating: [[{self.ratings[item][n]}]]"
        if item in self.flips and self.flips[item][n]:
            call = message["tool_calls"][0]["function"]
            ranking = json.loads(call["arguments"])["ordered_models"]
            ranking = [{"model": r["model"], "rank": 3 - r["rank"]} for r in ranking]
            call["arguments"] = json.dumps({"ordered_models": ranking})
        return out


# ------------------------------------------------------------------------------------------
# cache keys
# ------------------------------------------------------------------------------------------


def test_repeat_one_keeps_todays_key_and_later_repeats_get_their_own() -> None:
    messages = [{"role": "user", "content": "ITEM-a"}]
    params = {"temperature": 0, "max_tokens": 16}
    todays = hashlib.sha256(
        json.dumps(
            {"model": "m", "messages": messages, "params": params},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    assert api.request_key("m", messages, params) == todays
    assert api.request_key("m", messages, params, repeat=1) == todays
    keys = {api.request_key("m", messages, params, repeat=r) for r in (1, 2, 3)}
    assert len(keys) == 3
    with pytest.raises(ValueError, match="repeat"):
        api.request_key("m", messages, params, repeat=0)
    item = api.JudgeItem("x", messages, params)
    reps = api.with_repeats(item, 3)
    assert [r.item_id for r in reps] == ["x", "x#r2", "x#r3"]
    assert [r.repeat for r in reps] == [1, 2, 3]
    assert all(r.messages == messages and r.params == params for r in reps)


def test_a_cache_of_single_judgments_is_reused_as_repeat_one(api_key, tmp_path) -> None:
    cache = tmp_path / "cache.jsonl"
    with FakeOpenAI() as server:
        once = make_client(server, cache).judge(judge_items(["a", "b"]))
        assert server.requests == Counter({"a": 1, "b": 1})
        thrice = api.judge_repeated(make_client(server, cache), judge_items(["a", "b"]), 3)
        # only repeats 2 and 3 were asked; repeat 1 is the cached single judgment
        assert server.requests == Counter({"a": 3, "b": 3})
    assert thrice["raw:a"][0] == once["raw:a"]
    assert len({rec["key"] for rec in cache_lines(cache)}) == 6
    # the request itself carries no repeat number: same messages and params every time
    bodies = [b for b in server.bodies if "ITEM-a" in json.dumps(b)]
    assert len(bodies) == 3 and all(b == bodies[0] for b in bodies)


def test_a_run_cut_short_with_three_repeats_resumes_without_asking_twice(api_key, tmp_path) -> None:
    cache = tmp_path / "cache.jsonl"
    # item c's second request: 401, a hard failure that stops the run
    with FakeOpenAI({"c": ["ok", "401"]}) as server:
        with pytest.raises(api.ApiJudgeError):
            api.judge_repeated(make_client(server, cache), judge_items(["a", "b", "c", "d"]), 3)
        # repeat by repeat: every item got its first judgment before the failure
        assert server.served == Counter({"a": 2, "b": 2, "c": 1, "d": 1})
        assert len(cache_lines(cache)) == 6
        got = api.judge_repeated(make_client(server, cache), judge_items(["a", "b", "c", "d"]), 3)
    assert server.served == Counter({"a": 3, "b": 3, "c": 3, "d": 3})
    assert server.requests["c"] == 4  # the refused request, asked again by the rerun
    assert len(cache_lines(cache)) == 12 and len({r["key"] for r in cache_lines(cache)}) == 12
    assert [len(v) for v in got.values()] == [3, 3, 3, 3]
    assert [r["item_id"] for r in got["raw:b"]] == ["raw:b", "raw:b#r2", "raw:b#r3"]


# ------------------------------------------------------------------------------------------
# AlpacaEval: mean of the verdicts
# ------------------------------------------------------------------------------------------


def test_alpaca_eval_preference_is_the_mean_of_the_verdicts(api_key, tmp_path) -> None:
    model, ref = toy_alpaca_eval_pairs(6)
    flips = {"q1": [False, True, False], "q2": [True, True, True]}
    # q3: content filter on every request (all repeats fail); q4: its first request refused
    fake = VaryingJudge(always={"q3": "400"}, script={"q4": ["400"]}, flips=flips)
    with fake as server:
        client = make_client(server, tmp_path / "ae.jsonl", model="gpt-4-1106-preview")
        ann = api.judge_alpaca_eval_pairs(client, model, ref, repeats=3)
    assert len(ann) == 6  # one row per pair
    assert [a["preferences"] for a in ann] == [
        [2.0, 2.0, 2.0],
        [1.0, 2.0, 1.0],
        [1.0, 1.0, 1.0],
        [None, None, None],
        [None, 2.0, 2.0],
        [1.5, 1.5, 1.5],
    ]
    assert [a["preference"] for a in ann] == pytest.approx([2.0, 4 / 3, 1.0, None, 2.0, 1.5])
    assert [a["n_failed_repeats"] for a in ann] == [0, 0, 0, 3, 1, 0]
    assert ann[3]["judge_error"] == "HTTP 400 content_filter"  # every repeat failed
    assert ann[4]["judge_error"] is None  # a verdict remains: not a missing annotation
    assert ann[4]["judge_errors"] == ["HTTP 400 content_filter", None, None]
    assert ann[1]["preference_raw_completion"] == ann[1]["preference_raw_completions"][0]
    assert len(set(ann[1]["preference_raw_completions"])) == 2
    assert {a["served_model"] for a in ann[:3]} == {"gpt-4-1106-preview-2024-01-01"}
    for key in api.ALPACA_EVAL_REPEAT_KEYS:
        assert all(key in a for a in ann)
    # alpaca_eval's own win rate takes the fractional preferences
    from prefopt.judging.win_rates import alpaca_eval_leaderboard

    board = alpaca_eval_leaderboard(ann)
    assert board["n_total"] == 5
    assert board["win_rate"] == pytest.approx((1 + 1 / 3 + 0 + 1 + 0.5) / 5 * 100)


def test_one_repeat_writes_exactly_the_single_judgment_records(api_key, tmp_path) -> None:
    model, ref = toy_alpaca_eval_pairs(4)
    with FakeOpenAI(always={"q2": "400"}) as server:
        default = api.judge_alpaca_eval_pairs(
            make_client(server, tmp_path / "a.jsonl", model="gpt-4-1106-preview"), model, ref
        )
        one = api.judge_alpaca_eval_pairs(
            make_client(server, tmp_path / "a.jsonl", model="gpt-4-1106-preview"),
            model,
            ref,
            repeats=1,
        )
    assert one == default
    assert not any(key in rec for rec in one for key in api.ALPACA_EVAL_REPEAT_KEYS)
    assert [r["preference"] for r in one] == [2.0, 1.0, None, 1.5]


# ------------------------------------------------------------------------------------------
# MT-Bench: median of the scores
# ------------------------------------------------------------------------------------------


def _mt_inputs() -> tuple[list, dict, dict, dict]:
    questions = [
        q for q in mt_bench.load_questions(MT / "question.jsonl") if q["question_id"] in (81, 82)
    ]
    refs = mt_bench.load_model_answers(MT / "reference_answer" / "gpt-4.jsonl")
    prompts = mt_bench.load_judge_prompts(MT / "judge_prompts.jsonl")
    answers = {
        q["question_id"]: {
            "question_id": q["question_id"],
            "choices": [{"index": 0, "turns": [f"ITEM-a{q['question_id']}t{t}" for t in (1, 2)]}],
        }
        for q in questions
    }
    return questions, answers, prompts, refs


def test_mt_bench_score_is_the_median_of_the_ratings(api_key, tmp_path) -> None:
    questions, answers, prompts, refs = _mt_inputs()
    # a82t1's 4th request is the rerun asking its refused first repeat again
    ratings = {"a81t1": [3, 9, 4], "a81t2": [7, 7, 7], "a82t1": [None, 2, 6, 8]}
    # a82t1's first request is refused (a failed repeat); a82t2 is refused every time
    fake = VaryingJudge(script={"a82t1": ["400"]}, always={"a82t2": "400"}, ratings=ratings)
    with fake as server:
        client = make_client(server, tmp_path / "mt.jsonl", model="gpt-4-0613")
        rows = api.judge_mt_bench(
            client, questions, answers, prompts, refs, model_id="toy-seed0", repeats=3
        )
        rerun = api.judge_mt_bench(
            make_client(server, tmp_path / "mt.jsonl", model="gpt-4-0613"),
            questions,
            answers,
            prompts,
            refs,
            model_id="toy-seed0",
            repeats=3,
        )
    by = {(r["question_id"], r["turn"]): r for r in rows}
    assert len(rows) == 4  # one row per turn
    assert by[(81, 1)]["scores"] == [3.0, 9.0, 4.0] and by[(81, 1)]["score"] == 4.0
    assert by[(81, 2)]["score"] == 7.0 and by[(81, 2)]["n_failed_repeats"] == 0
    assert by[(82, 1)]["scores"] == [None, 2.0, 6.0] and by[(82, 1)]["score"] == 4.0
    assert by[(82, 1)]["n_failed_repeats"] == 1 and by[(82, 1)]["judge_error"] is None
    assert by[(82, 1)]["judgment"].endswith("[[2]]")  # the first answer with a rating
    failed = by[(82, 2)]
    assert (failed["score"], failed["judgment"]) == (-1.0, mt_bench.API_ERROR_OUTPUT)
    assert failed["judge_error"] == "HTTP 400 content_filter"
    assert failed["scores"] == [None, None, None] and failed["n_failed_repeats"] == 3
    assert set(mt_bench.REPEAT_KEYS) <= set(by[(81, 1)])
    assert all(r["judge"] == ["gpt-4-0613", r["judge"][1]] for r in rows)
    # the rerun reads the cache: the same rows, and asks a refused repeat once more
    same = {(r["question_id"], r["turn"]): r for r in rerun}
    assert [same[k] for k in ((81, 1), (81, 2))] == [by[k] for k in ((81, 1), (81, 2))]
    assert same[(82, 1)]["scores"] == [8.0, 2.0, 6.0] and same[(82, 1)]["score"] == 6.0
    assert same[(82, 1)]["n_failed_repeats"] == 0
    assert server.requests == Counter({"a81t1": 3, "a81t2": 3, "a82t1": 4, "a82t2": 6})


def test_median_rule() -> None:
    assert mt_bench.median_score([3.0, 9.0, 4.0]) == 4.0
    assert mt_bench.median_score([2.0, -1.0, 6.0]) == 4.0  # an unreadable rating is left out
    assert mt_bench.median_score([None, 5.0]) == 5.0
    assert mt_bench.median_score([-1.0, None]) == -1.0  # none readable: a failure, as FastChat
    assert mt_bench.median_score([7.0]) == 7.0
    assert api.mean_preference([2.0, 1.0, None]) == 1.5
    assert api.mean_preference([None, None]) is None


# ------------------------------------------------------------------------------------------
# config check and preflight
# ------------------------------------------------------------------------------------------


@pytest.fixture
def paper() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def test_config_refuses_repeats_with_the_local_judge(paper) -> None:
    assert validate_config(copy.deepcopy(paper))["judges"]["repeats"] == 1
    api_judges = copy.deepcopy(paper)
    api_judges["judges"].update(
        alpaca_eval="alpaca_eval_fn_gpt-4.1-2025-04-14", mt_bench="gpt-4.1-2025-04-14", repeats=3
    )
    assert validate_config(api_judges)["judges"]["repeats"] == 3
    for benchmark in ("alpaca_eval", "mt_bench"):
        cfg = copy.deepcopy(api_judges)
        cfg["judges"][benchmark] = "local"
        with pytest.raises(ConfigError) as err:
            validate_config(cfg)
        text = str(err.value)
        assert "judges.repeats" in text and f"judges.{benchmark} = 'local'" in text
        assert "deterministic" in text
    once = copy.deepcopy(api_judges)
    once["judges"].update(alpaca_eval="local", mt_bench="local", repeats=1)
    validate_config(once)
    zero = copy.deepcopy(api_judges)
    zero["judges"]["repeats"] = 0
    with pytest.raises(ConfigError, match=r"judges\.repeats"):
        validate_config(zero)


def test_preflight_counts_every_repeat() -> None:
    config = {
        "judges": {"alpaca_eval": "alpaca_eval_fn_gpt-4.1-2025-04-14", "mt_bench": "x"},
        "run": {"variants": ["base", "dpo"], "seeds": [0, 1, 2]},
        "data": {"alpaca_eval": {"max_prompts": None}, "mt_bench": {}},
    }
    once_ae, how_once = request_count(config, "alpaca_eval")
    assert (once_ae, how_once) == (2 * 3 * 805, "2 variant(s) x 3 seed(s) x 805 prompts")
    config["judges"]["repeats"] = 3
    assert request_count(config, "alpaca_eval") == (
        3 * once_ae,
        "2 variant(s) x 3 seed(s) x 805 prompts x 3 repeats",
    )
    count, how = request_count(config, "mt_bench")
    assert count == 2 * 3 * 80 * 2 * 3 and how.endswith("x 2 turns x 3 repeats")
    spec = judge_spec("alpaca_eval", "alpaca_eval_fn_gpt-4.1-2025-04-14")
    text = cost_text(spec, config, "alpaca_eval")
    assert f"{3 * once_ae:,} requests" in text and "x 3 repeats" in text
