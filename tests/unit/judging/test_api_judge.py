"""prefopt.judging.api against a real local fake OpenAI-compatible HTTP server.

The server (``standins.FakeOpenAI``: stdlib ``http.server`` on 127.0.0.1, random port) injects
429/5xx/timeouts and 400/401/404 errors per item, counts requests and successful answers per
item, reports the model it "served", refuses to serve more than a fixed number of requests and
shuts itself down after a deadline. Nothing reaches the internet.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the alpaca_eval comparison below must never reach the Hub

import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import EMBEDDED_DATA
from standins import FakeOpenAI, cache_lines, judge_items, toy_alpaca_eval_pairs

from prefopt.judging import MT_BENCH_API_JUDGE, api, mt_bench

MT = EMBEDDED_DATA / "mt_bench"


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture
def results(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    return d


def make_client(server: FakeOpenAI, cache: Path, sleeps: list[float] | None = None, **kw: Any):
    opts: dict[str, Any] = {
        "model": "fake-judge",
        "base_url": server.base_url,
        "cache_path": cache,
        "api_key_env": "PREFOPT_TEST_KEY",
        "max_retries": 4,
        "backoff_base": 0.01,
        "timeout": 1.0,  # the server's "timeout" mode stays silent for 1.5 s
    }
    opts.update(kw)
    sink = sleeps if sleeps is not None else []
    return api.ApiJudgeClient(sleep=lambda s: (sink.append(s), time.sleep(min(s, 0.06))), **opts)


def assert_key_absent(key: str, results_dir: Path, *texts: str) -> None:
    files = [p for p in results_dir.rglob("*") if p.is_file()]
    assert files, "nothing was written"
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    for text in texts:
        assert key not in text


# ------------------------------------------------------------------------------------------
# client: retries, resume, key safety
# ------------------------------------------------------------------------------------------


def test_injected_failures_are_retried(api_key, results, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    script = {"a": ["429", "500"], "b": ["timeout"], "c": ["503", "429", "500"]}
    sleeps: list[float] = []
    with FakeOpenAI(script) as server:
        client = make_client(server, results / "cache.jsonl", sleeps)
        out = client.judge(judge_items(["a", "b", "c", "d"]))
    assert set(out) == {"raw:a", "raw:b", "raw:c", "raw:d"}
    assert server.requests == Counter({"a": 3, "b": 2, "c": 4, "d": 1})
    assert server.served == Counter({"a": 1, "b": 1, "c": 1, "d": 1})
    assert len(sleeps) == 6
    assert any(0.05 <= s <= 0.056 for s in sleeps)  # Retry-After honoured
    assert out["raw:a"]["content"] == "Judged a. Rating: [[2]]"
    assert out["raw:a"]["response_model"] == "fake-judge-2024-01-01"
    assert len(cache_lines(results / "cache.jsonl")) == 4
    assert "APITimeoutError" in caplog.text and "HTTP 429" in caplog.text
    assert not server.exhausted
    assert_key_absent(api_key, results, caplog.text)


def test_gives_up_after_max_retries(api_key, results) -> None:
    with FakeOpenAI({"x": ["500"] * 10}) as server:
        client = make_client(server, results / "cache.jsonl", max_retries=2)
        with pytest.raises(api.ApiJudgeError, match=r"raw:x.*gave up after 3 attempts") as err:
            client.judge(judge_items(["w", "x", "y"]))
    assert err.value.item_id == "raw:x"
    assert server.requests["x"] == 3 and server.requests["y"] == 0
    assert [r["item_id"] for r in cache_lines(results / "cache.jsonl")] == ["raw:w"]


def test_hard_failure_then_resume_judges_each_item_once(api_key, results, caplog, capfd) -> None:
    """401 (the key) is never about one item: the run stops, and a rerun resumes."""
    caplog.set_level(logging.DEBUG)
    names = [str(i) for i in range(6)]
    cache = results / "cache.jsonl"
    with FakeOpenAI({"3": ["401"]}) as server:
        with pytest.raises(api.ApiJudgeError) as err:
            make_client(server, cache).judge(judge_items(names))
        assert err.value.item_id == "raw:3" and "HTTP 401" in str(err.value)
        assert api.REDACTED in str(err.value)  # the server echoed the key back
        assert err.value.__context__ is None and err.value.__cause__ is None
        assert [r["item_id"] for r in cache_lines(cache)] == ["raw:0", "raw:1", "raw:2"]

        out = make_client(server, cache).judge(judge_items(names))  # fresh, as after a restart
    assert sorted(out) == [f"raw:{n}" for n in names]
    assert server.served == Counter({n: 1 for n in names})
    assert server.requests == Counter({**{n: 1 for n in names}, "3": 2})
    assert len(cache_lines(cache)) == 6
    (results / "annotations.json").write_text(json.dumps(list(out.values())))
    captured = capfd.readouterr()
    assert "[judge estimate]" in captured.err
    assert_key_absent(api_key, results, caplog.text, captured.out, captured.err, str(err.value))


DRIVER = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.DEBUG)
    from prefopt.judging.api import ApiJudgeClient, JudgeItem
    items = [
        JudgeItem(
            f"raw:{n}",
            [{"role": "system", "content": "judge"}, {"role": "user", "content": f"ITEM-{n}"}],
            {"temperature": 0, "max_tokens": 16},
        )
        for n in sys.argv[3].split(",")
    ]
    client = ApiJudgeClient(
        model="fake-judge", base_url=sys.argv[1], cache_path=sys.argv[2],
        api_key_env="PREFOPT_TEST_KEY", timeout=60, backoff_base=0.01,
    )
    client.judge(items)
    print("finished")
    """
)


def test_killed_process_resumes_without_loss_or_duplicates(api_key, results, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    names = [str(i) for i in range(8)]
    cache = results / "cache.jsonl"
    with FakeOpenAI({"4": ["hang"]}) as server:
        proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, server.base_url, str(cache), ",".join(names)],
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.hung.wait(30), "the judge never reached item 4"
        finally:
            proc.kill()  # SIGKILL mid-request: no cleanup code runs
        stdout, stderr = proc.communicate(timeout=30)
        server.release.set()
        assert "finished" not in stdout
        assert [r["item_id"] for r in cache_lines(cache)] == [f"raw:{i}" for i in range(4)]

        out = make_client(server, cache, timeout=5).judge(judge_items(names))
    assert sorted(out) == sorted(f"raw:{n}" for n in names)
    assert server.served == Counter({n: 1 for n in names})  # nothing judged twice
    assert server.requests["4"] == 2 and sum(server.requests.values()) == 9
    assert len(cache_lines(cache)) == 8
    assert_key_absent(api_key, results, caplog.text, stdout, stderr)


def test_concurrent_workers_stop_on_hard_failure_and_resume(api_key, results) -> None:
    names = [str(i) for i in range(9)]
    cache = results / "cache.jsonl"
    with FakeOpenAI({"5": ["401"], "2": ["429"]}) as server:
        with pytest.raises(api.ApiJudgeError, match="raw:5"):
            make_client(server, cache, max_workers=3).judge(judge_items(names))
        first = {r["item_id"] for r in cache_lines(cache)}
        assert "raw:5" not in first
        out = make_client(server, cache, max_workers=3).judge(judge_items(names))
    assert len(out) == 9 and server.served == Counter({n: 1 for n in names})
    assert all(server.requests[n] == 1 for n in names if f"raw:{n}" in first and n != "2")


def test_eight_workers_with_faults_lose_nothing_and_ask_nothing_twice(api_key, results) -> None:
    """The DAG's default (judges.max_concurrency: 8) against a server that rate-limits, fails,
    times out and refuses: every item is answered exactly once or recorded missing, requests
    overlap, and a rerun asks only the refused item once more."""
    names = [str(i) for i in range(24)]
    cache = results / "cache.jsonl"
    script = {"1": ["429", "429"], "4": ["500"], "7": ["timeout"], "9": ["503", "429"]}
    with FakeOpenAI(script, always={"12": "400"}) as server:
        out = make_client(server, cache, max_workers=8).judge(judge_items(names))
    assert len(out) == 24 and server.max_in_flight >= 2
    assert server.served == Counter({n: 1 for n in names if n != "12"})
    assert api.is_missing(out["raw:12"]) and sum(map(api.is_missing, out.values())) == 1
    assert [server.requests[n] for n in ("1", "4", "7", "9", "12", "0")] == [3, 2, 2, 3, 1, 1]
    assert {r["item_id"] for r in cache_lines(cache)} == set(out)
    with FakeOpenAI(always={"12": "400"}) as again:
        rerun = make_client(again, cache, max_workers=8).judge(judge_items(names))
    assert again.total == 1 and again.requests["12"] == 1  # the refused item, asked once more
    assert {k: v["response_model"] for k, v in rerun.items() if k != "raw:12"} == {
        k: v["response_model"] for k, v in out.items() if k != "raw:12"
    }
    assert_key_absent(api_key, results)


def test_item_level_error_is_a_missing_annotation_asked_at_most_twice(
    api_key, results, caplog, capfd
) -> None:
    """A 400 (content filter) for one item: recorded as missing with its kind, never blocking
    the others; the key the server echoed is redacted from the record; the next run asks once
    more, every later run keeps it missing without a request."""
    caplog.set_level(logging.DEBUG)
    names = [str(i) for i in range(5)]
    cache = results / "cache.jsonl"
    with FakeOpenAI(always={"3": "400"}, script={"1": ["503"]}) as server:
        first = make_client(server, cache).judge(judge_items(names))
        rec = first["raw:3"]
        assert api.is_missing(rec) and rec["error"] == "HTTP 400 content_filter"
        assert rec["attempts"] == 1 and rec["content"] is None and rec["response_model"] is None
        assert api.REDACTED in rec["error_message"]
        assert all(not api.is_missing(first[f"raw:{n}"]) for n in "0124")
        assert server.requests["3"] == 1 and server.requests["1"] == 2  # 503 still retried
        second = make_client(server, cache).judge(judge_items(names))
        assert second["raw:3"]["attempts"] == 2 and server.requests["3"] == 2
        client = make_client(server, cache)
        assert client.estimate(judge_items(names), quiet=True)["n_to_request"] == 0
        third = client.judge(judge_items(names))
    assert third["raw:3"]["attempts"] == 2 and server.requests["3"] == 2
    assert server.served == Counter({n: 1 for n in "0124"})
    assert [r["item_id"] for r in cache_lines(cache)].count("raw:3") == 2
    captured = capfd.readouterr()
    assert "(missing 1)" in captured.err
    assert "HTTP 400 content_filter" in caplog.text and "recorded as missing" in caplog.text
    assert_key_absent(api_key, results, caplog.text, captured.out, captured.err)


def test_missing_annotation_answered_on_the_next_run(api_key, results) -> None:
    cache = results / "cache.jsonl"
    with FakeOpenAI({"b": ["404"]}) as server:
        first = make_client(server, cache).judge(judge_items(["a", "b"]))
        assert first["raw:b"]["error"] == "HTTP 404 model_not_found"
        second = make_client(server, cache).judge(judge_items(["a", "b"]))
    assert not api.is_missing(second["raw:b"])
    assert second["raw:b"]["content"] == "Judged b. Rating: [[2]]"
    assert server.requests == Counter({"a": 1, "b": 2})
    back = make_client(server, cache).cached(judge_items(["b"])[0])  # the last line of a key wins
    assert back is not None and not api.is_missing(back)


def test_a_streak_of_refusals_stops_the_run_and_caches_none_of_them(api_key, results) -> None:
    """Every request refused (a wrong model name, a deleted deployment): after
    max_consecutive_missing in a row the run stops, and nothing is cached as missing; an answer
    between refusals resets the streak."""
    cache = results / "cache.jsonl"
    names = ["a", "b", "c", "d", "e"]
    with FakeOpenAI(always={n: "404" for n in names}) as server:
        with pytest.raises(api.ApiJudgeError, match=r"3 requests in a row got no answer.*404"):
            make_client(server, cache, max_consecutive_missing=3).judge(judge_items(names))
        assert server.total == 3 and not cache.exists()
    with FakeOpenAI(always={"a": "400", "b": "400", "d": "400", "e": "400"}) as server:
        out = make_client(server, cache, max_consecutive_missing=3).judge(judge_items(names))
    assert [api.is_missing(out[f"raw:{n}"]) for n in names] == [True, True, False, True, True]
    assert len(cache_lines(cache)) == 5


def test_unusable_answer_is_a_hard_failure(api_key, results) -> None:
    with FakeOpenAI({"e": ["empty"]}) as server:
        with pytest.raises(api.ApiJudgeError, match=r"raw:e.*IndexError"):
            make_client(server, results / "c.jsonl").judge(judge_items(["d", "e"]))
        out = make_client(server, results / "c.jsonl").judge(judge_items(["d", "e"]))
    assert server.requests == Counter({"d": 1, "e": 2}) and len(out) == 2


def test_torn_cache_line_is_dropped(api_key, results) -> None:
    cache = results / "cache.jsonl"
    with FakeOpenAI() as server:
        make_client(server, cache).judge(judge_items(["a", "b"]))
        with open(cache, "a") as fh:
            fh.write('{"key": "deadbeef", "item_id": "raw:c", "cont')  # crash mid-write
        client = make_client(server, cache)
        assert client.cached(judge_items(["a"])[0]) is not None
        out = client.judge(judge_items(["a", "b", "c"]))
    assert out["raw:c"]["content"].startswith("Judged c")
    assert [r["item_id"] for r in cache_lines(cache)] == ["raw:a", "raw:b", "raw:c"]
    assert server.served == Counter({"a": 1, "b": 1, "c": 1})


def test_identical_requests_are_sent_once(api_key, results) -> None:
    same = judge_items(["z"])[0]
    twin = api.JudgeItem("other-id", same.messages, same.params)
    with FakeOpenAI() as server:
        out = make_client(server, results / "c.jsonl").judge([same, twin])
    assert server.requests["z"] == 1 and out["other-id"] is out["raw:z"]


def test_estimate_and_budget(api_key, results, capsys) -> None:
    with FakeOpenAI() as server:
        client = make_client(server, results / "c.jsonl", price_per_1k_prompt_tokens=1.0)
        est = client.estimate(judge_items(["a", "b"]))
        assert (est["n_items"], est["n_cached"], est["n_to_request"]) == (2, 0, 2)
        assert est["est_prompt_tokens"] > 0 and est["est_max_completion_tokens"] == 32
        assert "[judge estimate]" in capsys.readouterr().err
        client.budget_usd = 1e-6
        with pytest.raises(api.ApiJudgeError, match="exceeds budget"):
            client.judge(judge_items(["a", "b"]))
        assert server.total == 0
        client.budget_usd = None
        client.judge(judge_items(["a"]))
        est = client.estimate(judge_items(["a", "b"]), quiet=True)
        assert (est["n_cached"], est["n_to_request"]) == (1, 1)


def test_key_only_from_environment(monkeypatch, results) -> None:
    monkeypatch.delenv("PREFOPT_TEST_KEY", raising=False)
    with pytest.raises(api.ApiJudgeError, match="PREFOPT_TEST_KEY is not set"):
        api.ApiJudgeClient(model="m", cache_path=results / "c", api_key_env="PREFOPT_TEST_KEY")
    client = api.ApiJudgeClient(
        model="m", cache_path=results / "c", api_key_env="PREFOPT_TEST_KEY", allow_missing_key=True
    )
    assert "EMPTY" not in repr(client)


def test_redaction(api_key, results) -> None:
    with FakeOpenAI() as server:
        client = make_client(server, results / "c.jsonl")
    assert api_key not in repr(client)
    assert client.redact(f"x {api_key} y") == f"x {api.REDACTED} y"
    assert client.redact("Authorization: Bearer abc.def") == f"Authorization: Bearer {api.REDACTED}"


# ------------------------------------------------------------------------------------------
# front-ends
# ------------------------------------------------------------------------------------------


def test_alpaca_eval_pairs(api_key, results, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    model, ref = toy_alpaca_eval_pairs(7)
    switched = [api.is_switched_outputs(m["instruction"]) for m in model]
    assert any(switched[:6]) and not all(switched[:6])  # both orders exercised
    with FakeOpenAI({"q1": ["500"]}, always={"q4": "400"}) as server:
        client = make_client(server, results / "ae_cache.jsonl", model="gpt-4-1106-preview")
        ann = api.judge_alpaca_eval_pairs(client, model, ref)
        rerun = make_client(server, results / "ae_cache.jsonl", model="gpt-4-1106-preview")
        again = api.judge_alpaca_eval_pairs(rerun, model, ref)
    prefs = [a["preference"] for a in ann]
    assert prefs == [2.0, 1.0, 2.0, 1.0, None, 1.0, 1.5]  # q4: content filter, a null
    assert [a["is_switched_outputs"] for a in ann] == switched
    assert ann[-1]["preference_raw_completion"] is None
    assert {a["annotator"] for a in ann} == {"alpaca_eval_gpt4_turbo_fn"}
    assert ann[0]["output_1"] == ref[0]["output"] and ann[0]["output_2"] == model[0]["output"]
    assert ann[0]["generator_2"] == "toy-seed0" and ann[0]["dataset"] == "toy"
    assert [a["judge_error"] for a in ann] == [None] * 4 + ["HTTP 400 content_filter", None, None]
    assert ann[4]["preference_raw_completion"] is None and ann[4]["served_model"] is None
    assert {a["judge_model"] for a in ann} == {"gpt-4-1106-preview"}
    served = [a["served_model"] for i, a in enumerate(ann) if i not in (4, 6)]
    assert set(served) == {"gpt-4-1106-preview-2024-01-01"}
    assert [a["preference"] for a in again] == prefs
    assert server.served == Counter({f"q{i}": 1 for i in range(6) if i != 4})
    assert server.requests["q4"] == 2  # asked again by the rerun, then kept missing
    (results / "annotations.json").write_text(json.dumps(ann))
    assert_key_absent(api_key, results, caplog.text)

    # the request is exactly what alpaca_eval 0.6.6 itself would send
    from alpaca_eval import utils as ae_utils

    annotator = api.load_alpaca_eval_annotator()
    body = next(b for b in server.bodies if "ITEM-q0" in json.dumps(b))
    first, second = (
        (model[0]["output"], ref[0]["output"])
        if switched[0]
        else (ref[0]["output"], model[0]["output"])
    )

    df = pd.DataFrame(
        [{"instruction": model[0]["instruction"], "output_1": first, "output_2": second}]
    )
    prompts, _ = ae_utils.make_prompts(df, annotator.prompt_template)
    assert body["messages"] == ae_utils.prompt_to_chatml(prompts[0].strip())
    assert body["model"] == "gpt-4-1106-preview"
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0, 100, 1.0)
    assert body["tool_choice"] == {
        "type": "function",
        "function": {"name": "make_partial_leaderboard"},
    }
    assert body["tools"][0]["function"]["name"] == "make_partial_leaderboard"


def test_vendored_config_matches_installed_alpaca_eval() -> None:
    """Same prompt bytes and same YAML content as alpaca_eval 0.6.6; dated judge snapshot."""
    import importlib.util

    import yaml

    pkg = Path(importlib.util.find_spec("alpaca_eval").origin).parent
    upstream = pkg / "evaluators_configs" / api.ALPACA_EVAL_ANNOTATOR
    vendored = api.DEFAULT_ALPACA_EVAL_CONFIG.parent
    assert (vendored / "alpaca_eval_fn.txt").read_bytes() == (
        upstream / "alpaca_eval_fn.txt"
    ).read_bytes()
    ours = yaml.safe_load((vendored / "configs.yaml").read_text())
    assert ours == yaml.safe_load((upstream / "configs.yaml").read_text())
    annotator = api.load_alpaca_eval_annotator()
    assert re.fullmatch(r"gpt-4-\d{4}-preview", annotator.config_model)
    assert annotator.params["temperature"] == 0 and annotator.params["max_tokens"] == 100
    assert (annotator.annotation_key, annotator.model_1_name) == ("ordered_models", "m")


@pytest.mark.mirror
def test_ranking_parser_reproduces_authors_annotations(mirror: Path) -> None:
    """Our parse + un-switch gives the preference alpaca_eval 0.6.6 stored, for every example."""
    n = 0
    for path in sorted((mirror / "authors_alpaca_eval").glob("*/annotations.json")):
        for rec in json.loads(path.read_text()):
            raw = rec["preference_raw_completion"]
            if raw is None:
                continue
            pref = api.parse_ranking(raw)
            if api.is_switched_outputs(rec["instruction"]):
                pref = 3 - pref
            assert pref == rec["preference"], (path.parent.name, rec["instruction"][:40])
            n += 1
    assert n > 5000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"ordered_models": [{"model": "m", "rank": 1}, {"model": "M", "rank": 2}]}', 1),
        ('{"ordered_models": [{"model": "M", "rank": 1}, {"model": "m", "rank": 2}]}', 2),
        ('```json\n{"ordered_models": [{"model": "m", "rank": 2}]}```', 2),
        ('{"ordered_models": [{"model": "m", "rank": 3}]}', None),
        ("not json", None),
        ("", None),
    ],
)
def test_parse_ranking(text: str, expected) -> None:
    assert api.parse_ranking(text) == expected


def test_mt_bench_front_end(api_key, results, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    questions = [
        q
        for q in mt_bench.load_questions(MT / "question.jsonl")
        if q["question_id"] in (81, 82, 111)
    ]
    refs = mt_bench.load_model_answers(MT / "reference_answer" / "gpt-4.jsonl")
    prompts = mt_bench.load_judge_prompts(MT / "judge_prompts.jsonl")
    answers = {
        q["question_id"]: {
            "question_id": q["question_id"],
            "choices": [
                {
                    "index": 0,
                    "turns": [f"ITEM-a{q['question_id']}t1", f"ITEM-a{q['question_id']}t2"],
                }
            ],
        }
        for q in questions
    }
    answers[82]["choices"][0]["turns"][1] += " NORATING"
    judge = MT_BENCH_API_JUDGE
    assert judge == "gpt-4-0613"  # pinned: the snapshot, not the alias gpt-4
    # the content filter refuses question 111's second turn, every time it is asked
    fake = FakeOpenAI({"a81t2": ["timeout"]}, always={"a111t2": "400"}, served_model=judge)
    with fake as server:
        client = make_client(server, results / "mt_cache.jsonl", model=judge)
        judged = api.judge_mt_bench(client, questions, answers, prompts, refs, model_id="toy-seed0")
        rerun = api.judge_mt_bench(
            make_client(server, results / "mt_cache.jsonl", model=judge),
            questions,
            answers,
            prompts,
            refs,
            model_id="toy-seed0",
        )
    by = {(r["question_id"], r["turn"]): r for r in judged}
    again = {(r["question_id"], r["turn"]): r for r in rerun}
    assert {k: r for k, r in by.items() if k != (111, 2)} == {
        k: r for k, r in again.items() if k != (111, 2)
    }  # byte-identical rerun from the cache (same tstamps), except the one asked again
    assert len(judged) == 6 and server.served == Counter(
        {"a81t1": 1, "a81t2": 1, "a82t1": 1, "a82t2": 1, "a111t1": 1}
    )
    assert server.requests["a111t2"] == 2
    assert by[(81, 1)]["judge"] == [judge, "single-v1"]
    assert by[(81, 2)]["judge"] == [judge, "single-v1-multi-turn"]
    assert by[(111, 1)]["judge"] == [judge, "single-math-v1"]
    assert by[(111, 2)]["judge"] == [judge, "single-math-v1-multi-turn"]
    assert refs[111]["choices"][0]["turns"][0] in by[(111, 1)]["user_prompt"]
    assert by[(82, 2)]["score"] == -1.0 and by[(82, 2)]["judge_error"] is None
    assert by[(81, 1)]["score"] == float(len("a81t1") % 10 + 1)
    missing = by[(111, 2)]
    assert (missing["judgment"], missing["score"]) == (mt_bench.API_ERROR_OUTPUT, -1.0)
    assert missing["judge_error"] == "HTTP 400 content_filter" and missing["served_model"] is None
    assert all(tuple(r) == mt_bench.JUDGMENT_KEYS + mt_bench.PROVENANCE_KEYS for r in judged)
    assert {r["judge_model"] for r in judged} == {judge}
    assert {r["served_model"] for r in judged if r is not missing} == {judge}
    body = server.bodies[0]
    assert body["model"] == judge
    assert (body["temperature"], body["max_tokens"]) == (0.0, 2048)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    table = mt_bench.category_scores(judged, questions).set_index("category")
    assert table.loc["overall", "n_failed"] == 2 and table.loc["overall", "n_valid"] == 4
    assert table.loc["overall", "n_missing"] == 1 and table.loc["math", "n_missing"] == 1
    out = results / "judgments.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in judged))
    assert_key_absent(api_key, results, caplog.text)
