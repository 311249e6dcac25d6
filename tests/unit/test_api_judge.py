"""prefopt.judging.api against a real local fake OpenAI-compatible HTTP server.

The server (stdlib ``http.server`` on 127.0.0.1, random port) injects 429/5xx/timeouts/hard
errors per item, counts requests and successful answers per item, refuses to serve more than a
fixed number of requests and shuts itself down after a deadline. Nothing reaches the internet.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the alpaca_eval comparison below must never reach the Hub

import json
import logging
import re
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import EMBEDDED_DATA

from prefopt import mt_bench
from prefopt.judging import api

ITEM_RE = re.compile(r"ITEM-([A-Za-z0-9_]+)")
MT = EMBEDDED_DATA / "mt_bench"


class FakeOpenAI:
    """Fake ``/v1/chat/completions`` endpoint with per-item failure scripts.

    ``script`` maps an item marker (``ITEM-<name>`` in the last message that has one) to the
    list of modes its successive requests get: ``429`` (with Retry-After), ``500``, ``503``,
    ``timeout`` (answer nothing for longer than the client waits), ``400`` (hard error that
    echoes the Authorization header back, like a careless server), ``hang`` (block until
    released, then drop the connection), ``empty`` (200 without choices). Requests past the
    script are answered normally.
    """

    def __init__(
        self,
        script: dict[str, list[str]] | None = None,
        *,
        max_requests: int = 300,
        lifetime_s: float = 90.0,
        timeout_sleep: float = 1.5,
    ) -> None:
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.max_requests = max_requests
        self.lifetime_s = lifetime_s
        self.timeout_sleep = timeout_sleep
        self.requests: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.total = 0
        self.exhausted = False
        self.hung = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> FakeOpenAI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                fake.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.deadline = threading.Timer(self.lifetime_s, self.httpd.shutdown)
        self.deadline.daemon = True
        self.deadline.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.deadline.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    # -- request handling -----------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", 0))))
        item = self.item_of(body)
        with self.lock:
            self.total += 1
            if self.total > self.max_requests:
                self.exhausted = True
                mode = "exhausted"
            else:
                self.requests[item] += 1
                self.bodies.append(body)
                pending = self.script.get(item)
                mode = pending.pop(0) if pending else "ok"
                if mode == "ok":
                    self.served[item] += 1
        if mode == "exhausted":
            self._send(h, 503, {"error": {"message": "request budget exhausted"}})
            threading.Thread(target=self.httpd.shutdown, daemon=True).start()
        elif mode == "429":
            self._send(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": "0.05"})
        elif mode in ("500", "503"):
            self._send(h, int(mode), {"error": {"message": "server error"}})
        elif mode == "400":
            auth = h.headers.get("Authorization", "")
            self._send(h, 400, {"error": {"message": f"bad request; you sent {auth}"}})
        elif mode == "timeout":
            time.sleep(self.timeout_sleep)  # then drop the connection without an answer
        elif mode == "empty":
            self._send(h, 200, {**self.completion(body, item), "choices": []})
        elif mode == "hang":
            self.hung.set()
            self.release.wait(20)
        else:
            self._send(h, 200, self.completion(body, item))

    @staticmethod
    def item_of(body: dict[str, Any]) -> str:
        for msg in reversed(body["messages"]):
            found = ITEM_RE.findall(msg.get("content") or "")
            if found:
                return found[-1]
        return "?"

    @staticmethod
    def completion(body: dict[str, Any], item: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant"}
        if body.get("tools"):
            text = body["messages"][-1]["content"]
            # whichever output contains GOOD ranks first
            m_wins = text.find("GOOD") < text.find('"model": "M"')
            ranking = [{"model": "m", "rank": 1}, {"model": "M", "rank": 2}]
            if not m_wins:
                ranking = [{"model": "M", "rank": 1}, {"model": "m", "rank": 2}]
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{item}",
                    "type": "function",
                    "function": {
                        "name": "make_partial_leaderboard",
                        "arguments": json.dumps({"ordered_models": ranking}),
                    },
                }
            ]
        elif "NORATING" in json.dumps(body["messages"]):
            message["content"] = "I cannot rate this."
        else:
            message["content"] = f"Judged {item}. Rating: [[{len(item) % 10 + 1}]]"
        return {
            "id": f"chatcmpl-{item}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"] + "-2024-01-01",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


# ------------------------------------------------------------------------------------------
# fixtures and helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("PREFOPT_TEST_KEY", key)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_LOG", "debug")  # make the client log as much as it can
    return key


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


def items(names: list[str]) -> list[api.JudgeItem]:
    return [
        api.JudgeItem(
            f"raw:{n}",
            [{"role": "system", "content": "judge"}, {"role": "user", "content": f"ITEM-{n}"}],
            {"temperature": 0, "max_tokens": 16},
        )
        for n in names
    ]


def assert_key_absent(key: str, results_dir: Path, *texts: str) -> None:
    files = [p for p in results_dir.rglob("*") if p.is_file()]
    assert files, "nothing was written"
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    for text in texts:
        assert key not in text


def cache_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------
# client: retries, resume, key safety
# ------------------------------------------------------------------------------------------


def test_injected_failures_are_retried(api_key, results, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    script = {"a": ["429", "500"], "b": ["timeout"], "c": ["503", "429", "500"]}
    sleeps: list[float] = []
    with FakeOpenAI(script) as server:
        client = make_client(server, results / "cache.jsonl", sleeps)
        out = client.judge(items(["a", "b", "c", "d"]))
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
            client.judge(items(["w", "x", "y"]))
    assert err.value.item_id == "raw:x"
    assert server.requests["x"] == 3 and server.requests["y"] == 0
    assert [r["item_id"] for r in cache_lines(results / "cache.jsonl")] == ["raw:w"]


def test_hard_failure_then_resume_judges_each_item_once(api_key, results, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    names = [str(i) for i in range(6)]
    cache = results / "cache.jsonl"
    with FakeOpenAI({"3": ["400"]}) as server:
        with pytest.raises(api.ApiJudgeError) as err:
            make_client(server, cache).judge(items(names))
        assert err.value.item_id == "raw:3" and "HTTP 400" in str(err.value)
        assert api.REDACTED in str(err.value)  # the server echoed the key back
        assert err.value.__context__ is None and err.value.__cause__ is None
        assert [r["item_id"] for r in cache_lines(cache)] == ["raw:0", "raw:1", "raw:2"]

        out = make_client(server, cache).judge(items(names))  # a fresh run, as after a restart
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

        out = make_client(server, cache, timeout=5).judge(items(names))
    assert sorted(out) == sorted(f"raw:{n}" for n in names)
    assert server.served == Counter({n: 1 for n in names})  # nothing judged twice
    assert server.requests["4"] == 2 and sum(server.requests.values()) == 9
    assert len(cache_lines(cache)) == 8
    assert_key_absent(api_key, results, caplog.text, stdout, stderr)


def test_concurrent_workers_stop_on_hard_failure_and_resume(api_key, results) -> None:
    names = [str(i) for i in range(9)]
    cache = results / "cache.jsonl"
    with FakeOpenAI({"5": ["400"], "2": ["429"]}) as server:
        with pytest.raises(api.ApiJudgeError, match="raw:5"):
            make_client(server, cache, max_workers=3).judge(items(names))
        first = {r["item_id"] for r in cache_lines(cache)}
        assert "raw:5" not in first
        out = make_client(server, cache, max_workers=3).judge(items(names))
    assert len(out) == 9 and server.served == Counter({n: 1 for n in names})
    assert all(server.requests[n] == 1 for n in names if f"raw:{n}" in first and n != "2")


def test_unusable_answer_is_a_hard_failure(api_key, results) -> None:
    with FakeOpenAI({"e": ["empty"]}) as server:
        with pytest.raises(api.ApiJudgeError, match=r"raw:e.*IndexError"):
            make_client(server, results / "c.jsonl").judge(items(["d", "e"]))
        out = make_client(server, results / "c.jsonl").judge(items(["d", "e"]))
    assert server.requests == Counter({"d": 1, "e": 2}) and len(out) == 2


def test_torn_cache_line_is_dropped(api_key, results) -> None:
    cache = results / "cache.jsonl"
    with FakeOpenAI() as server:
        make_client(server, cache).judge(items(["a", "b"]))
        with open(cache, "a") as fh:
            fh.write('{"key": "deadbeef", "item_id": "raw:c", "cont')  # crash mid-write
        client = make_client(server, cache)
        assert client.cached(items(["a"])[0]) is not None
        out = client.judge(items(["a", "b", "c"]))
    assert out["raw:c"]["content"].startswith("Judged c")
    assert [r["item_id"] for r in cache_lines(cache)] == ["raw:a", "raw:b", "raw:c"]
    assert server.served == Counter({"a": 1, "b": 1, "c": 1})


def test_identical_requests_are_sent_once(api_key, results) -> None:
    same = items(["z"])[0]
    twin = api.JudgeItem("other-id", same.messages, same.params)
    with FakeOpenAI() as server:
        out = make_client(server, results / "c.jsonl").judge([same, twin])
    assert server.requests["z"] == 1 and out["other-id"] is out["raw:z"]


def test_estimate_and_budget(api_key, results, capsys) -> None:
    with FakeOpenAI() as server:
        client = make_client(server, results / "c.jsonl", price_per_1k_prompt_tokens=1.0)
        est = client.estimate(items(["a", "b"]))
        assert (est["n_items"], est["n_cached"], est["n_to_request"]) == (2, 0, 2)
        assert est["est_prompt_tokens"] > 0 and est["est_max_completion_tokens"] == 32
        assert "[judge estimate]" in capsys.readouterr().err
        client.budget_usd = 1e-6
        with pytest.raises(api.ApiJudgeError, match="exceeds budget"):
            client.judge(items(["a", "b"]))
        assert server.total == 0
        client.budget_usd = None
        client.judge(items(["a"]))
        est = client.estimate(items(["a", "b"]), quiet=True)
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


def _pairs(n: int) -> tuple[list[dict], list[dict]]:
    model, ref = [], []
    for i in range(n):
        instr = f"Question ITEM-q{i}: say something about {i}."
        good_model = i % 2 == 0
        model.append(
            {
                "instruction": instr,
                "output": f"{'GOOD' if good_model else 'meh'} answer {{literal}} {i}",
                "generator": "toy-seed0",
                "dataset": "toy",
            }
        )
        ref.append(
            {
                "instruction": instr,
                "output": f"{'meh' if good_model else 'GOOD'} reference {i}",
                "generator": "text_davinci_003",
                "dataset": "toy",
            }
        )
    model[-1]["output"] = ref[-1]["output"]  # identical outputs: a draw without a request
    return model, ref


def test_alpaca_eval_pairs(api_key, results, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    model, ref = _pairs(7)
    switched = [api.is_switched_outputs(m["instruction"]) for m in model]
    assert any(switched[:6]) and not all(switched[:6])  # both orders exercised
    with FakeOpenAI({"q1": ["500"]}) as server:
        client = make_client(server, results / "ae_cache.jsonl", model="gpt-4-1106-preview")
        ann = api.judge_alpaca_eval_pairs(client, model, ref)
        rerun = make_client(server, results / "ae_cache.jsonl", model="gpt-4-1106-preview")
        again = api.judge_alpaca_eval_pairs(rerun, model, ref)
    prefs = [a["preference"] for a in ann]
    assert prefs == [2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.5]
    assert [a["is_switched_outputs"] for a in ann] == switched
    assert ann[-1]["preference_raw_completion"] is None
    assert {a["annotator"] for a in ann} == {"alpaca_eval_gpt4_turbo_fn"}
    assert ann[0]["output_1"] == ref[0]["output"] and ann[0]["output_2"] == model[0]["output"]
    assert ann[0]["generator_2"] == "toy-seed0" and ann[0]["dataset"] == "toy"
    assert [a["preference"] for a in again] == prefs
    assert server.served == Counter({f"q{i}": 1 for i in range(6)})
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
    with FakeOpenAI({"a81t2": ["timeout"]}) as server:
        client = make_client(server, results / "mt_cache.jsonl", model="gpt-4")
        judged = api.judge_mt_bench(client, questions, answers, prompts, refs, model_id="toy-seed0")
        rerun = api.judge_mt_bench(
            make_client(server, results / "mt_cache.jsonl", model="gpt-4"),
            questions,
            answers,
            prompts,
            refs,
            model_id="toy-seed0",
        )
    assert judged == rerun  # byte-identical rerun from the cache (same tstamps)
    assert len(judged) == 6 and server.served == Counter(
        {"a81t1": 1, "a81t2": 1, "a82t1": 1, "a82t2": 1, "a111t1": 1, "a111t2": 1}
    )
    by = {(r["question_id"], r["turn"]): r for r in judged}
    assert by[(81, 1)]["judge"] == ["gpt-4", "single-v1"]
    assert by[(81, 2)]["judge"] == ["gpt-4", "single-v1-multi-turn"]
    assert by[(111, 1)]["judge"] == ["gpt-4", "single-math-v1"]
    assert by[(111, 2)]["judge"] == ["gpt-4", "single-math-v1-multi-turn"]
    assert refs[111]["choices"][0]["turns"][1] in by[(111, 2)]["user_prompt"]
    assert by[(82, 2)]["score"] == -1.0
    assert by[(81, 1)]["score"] == float(len("a81t1") % 10 + 1)
    assert all(tuple(r) == mt_bench.JUDGMENT_KEYS for r in judged)
    body = server.bodies[0]
    assert (body["temperature"], body["max_tokens"]) == (0.0, 2048)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    table = mt_bench.category_scores(judged, questions).set_index("category")
    assert table.loc["overall", "n_failed"] == 1 and table.loc["overall", "n_valid"] == 5
    out = results / "judgments.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in judged))
    assert_key_absent(api_key, results, caplog.text)
