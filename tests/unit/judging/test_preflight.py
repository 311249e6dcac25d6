"""prefopt.judging.preflight against a local stand-in of OpenAI's models API.

The stand-in (``standins.FakeOpenAI`` on 127.0.0.1) answers ``GET /v1/models/{model}`` as the real
API does: a model object, optionally with ``shutdown_date``, or 404 ``model_not_found``; it
records every request, so a test can tell that none was made. ``OPENAI_BASE_URL`` points the
openai SDK at it, as a user points it at a compatible endpoint or a proxy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import time

import pandas as pd
import pytest
from standins import FakeOpenAI

from prefopt.config import ConfigError
from prefopt.judging import preflight
from prefopt.judging.preflight import (
    JudgePreflightError,
    check_api_judges,
    check_before_run,
    configured_api_judges,
    offline_warnings,
    parse_shutdown_date,
    request_count,
)
from prefopt.judging.registry import API_KEY_ENV, judge_spec

AE_PAPER, AE_SUB = "alpaca_eval_gpt4_turbo_fn", "alpaca_eval_fn_gpt-4.1-2025-04-14"
MT_PAPER, MT_SUB = "gpt-4-0613", "gpt-4.1-2025-04-14"
TODAY = dt.date(2026, 6, 1)


def make_config(alpaca_eval: str = AE_PAPER, mt_bench: str = MT_PAPER, **data) -> dict:
    return {
        "judges": {"alpaca_eval": alpaca_eval, "mt_bench": mt_bench, "local_model": None},
        "run": {"variants": ["base", "dpo"], "seeds": [0, 1, 2]},
        "data": {
            "alpaca_eval": {"max_prompts": data.get("max_prompts")},
            "mt_bench": {"questions_per_category": data.get("questions_per_category")},
        },
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No key, endpoint or skip switch from the caller's environment."""
    for name in (API_KEY_ENV, "OPENAI_BASE_URL", preflight.SKIP_ENV, "OPENAI_ORG_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def key(monkeypatch) -> str:
    value = "sk-preflight-" + secrets.token_hex(16)
    monkeypatch.setenv(API_KEY_ENV, value)
    return value


@contextlib.contextmanager
def serve(monkeypatch, **kwargs):
    """The stand-in (FakeOpenAI's keywords), with OPENAI_BASE_URL pointing at it."""
    with FakeOpenAI(lifetime_s=60, **kwargs) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server


@pytest.fixture
def api(monkeypatch):
    """The stand-in knowing every model, with no shutdown date."""
    with serve(monkeypatch) as server:
        yield server


def api_judges(config):
    return configured_api_judges(config)


# --- the key ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_key_names_the_variable_and_asks_nothing(api, monkeypatch, value):
    if value is not None:
        monkeypatch.setenv(API_KEY_ENV, value)
    config = make_config()
    with pytest.raises(JudgePreflightError) as err:
        check_api_judges(config, api_judges(config), today=TODAY)
    message = str(err.value)
    assert f"environment variable {API_KEY_ENV} is not set" in message
    assert "judges.alpaca_eval" in message and "judges.mt_bench" in message
    assert "'gpt-4-1106-preview'" in message and "'gpt-4-0613'" in message
    assert api.seen == []  # no request without a key
    assert isinstance(err.value, ConfigError)


def test_refused_key_stops_the_run_and_is_never_printed(monkeypatch, key):
    """The stand-in echoes the Authorization header in its 401, as a careless server does."""
    config = make_config(mt_bench="local")
    with serve(monkeypatch, model_faults={"gpt-4-1106-preview": "401"}) as api:
        with pytest.raises(JudgePreflightError) as err:
            check_api_judges(config, api_judges(config), today=TODAY)
    message = str(err.value)
    assert "HTTP 401 invalid_api_key" in message and f"key in {API_KEY_ENV}" in message
    assert "Bearer [REDACTED]" in message
    assert key not in message and key[-12:] not in message
    assert api.model_lookups == ["gpt-4-1106-preview"]


# --- the model -------------------------------------------------------------------------------


def test_unknown_model_names_model_config_key_substitutes_and_cost(monkeypatch, key):
    config = make_config()
    with serve(monkeypatch, models={"gpt-4.1-2025-04-14": {}}) as api:
        with pytest.raises(JudgePreflightError) as err:
            check_api_judges(config, api_judges(config), today=TODAY)
    message = str(err.value)
    for benchmark, paper, sub in [
        ("alpaca_eval", AE_PAPER, AE_SUB),
        ("mt_bench", MT_PAPER, MT_SUB),
    ]:
        spec, substitute = judge_spec(benchmark, paper), judge_spec(benchmark, sub)
        assert f"config key judges.{benchmark} = {paper!r}" in message
        assert f"asks the model {spec.model!r}" in message
        assert f"The model `{spec.model}` does not exist" in message
        assert f"{sub!r} (model {substitute.model!r})" in message
    assert message.count("HTTP 404 model_not_found") == 2
    # AlpacaEval: 2 variants x 3 seeds x 805 prompts; MT-Bench: 2 x 3 x 80 questions x 2 turns
    ae_in, ae_out = preflight.TOKENS_PER_REQUEST["alpaca_eval_gpt4_turbo_fn"]
    mt_in, mt_out = preflight.TOKENS_PER_REQUEST["fastchat_single"]
    ae_cost = 4830 * (ae_in * 2.0 + ae_out * 8.0) / 1e6  # the substitute: $2/$8 per 1M
    mt_cost = 960 * (mt_in * 30.0 + mt_out * 60.0) / 1e6  # the paper's gpt-4-0613: $30/$60
    assert f"~${ae_cost:,.0f} (4,830 requests = 2 variant(s) x 3 seed(s) x 805 prompts" in message
    assert f"~${mt_cost:,.0f} (960 requests = 2 variant(s) x 3 seed(s) x 80 questions x 2" in (
        message
    )
    assert key not in message
    assert api.model_lookups == ["gpt-4-1106-preview", "gpt-4-0613"]


@pytest.mark.parametrize(
    "shutdown_date",
    ["2026-05-31", "2026-06-01", "2026-01-01T00:00:00Z", 1748736000, "1748736000", 1748736000000],
)
def test_shutdown_date_not_in_the_future_stops_the_run(monkeypatch, key, shutdown_date):
    with serve(monkeypatch, models={"gpt-4.1-2025-04-14": {"shutdown_date": shutdown_date}}):
        config = make_config(alpaca_eval=AE_SUB, mt_bench="local")
        with pytest.raises(JudgePreflightError) as err:
            check_api_judges(config, api_judges(config), today=TODAY)
    message = str(err.value)
    assert "reports its shutdown_date" in message and "not in the future" in message
    assert "judges.alpaca_eval" in message and "'gpt-4.1-2025-04-14'" in message


@pytest.mark.parametrize(
    "extra",
    [
        {},  # the field absent
        {"shutdown_date": None},
        {"shutdown_date": "2026-06-02"},
        {"shutdown_date": 1893456000},  # 2030-01-01 as a unix timestamp
        {"shutdown_date": "soon"},  # unreadable: noted, not fatal
    ],
)
def test_model_that_answers_with_no_past_shutdown_passes(monkeypatch, key, extra):
    with serve(monkeypatch, models={"gpt-4.1-2025-04-14": extra}) as server:
        config = make_config(alpaca_eval=AE_SUB, mt_bench=MT_SUB)
        notes = check_api_judges(config, api_judges(config), today=TODAY)
    # one request for the model both benchmarks' judges ask
    assert server.model_lookups == ["gpt-4.1-2025-04-14"]
    assert len(notes) == 2 and all("'gpt-4.1-2025-04-14' answers at" in n for n in notes)


def test_local_judges_make_no_request(api, key):
    config = make_config(alpaca_eval="local", mt_bench="local")
    assert configured_api_judges(config) == []
    assert check_before_run(config, today=TODAY) == []
    assert check_before_run(config, [("judge_alpaca_eval_local", {"variant": "base"})]) == []
    assert offline_warnings(config, today=dt.date(2030, 1, 1)) == []
    assert api.seen == []


def test_openai_base_url_is_honoured(api, key):
    """Nothing names the endpoint but OPENAI_BASE_URL: the SDK reads it, the stand-in answers."""
    config = make_config(mt_bench="local")
    notes = check_api_judges(config, api_judges(config), today=TODAY)
    assert api.seen == ["GET /v1/models/gpt-4-1106-preview"]
    assert notes == [
        f"judge preflight: judges.alpaca_eval = {AE_PAPER!r}: 'gpt-4-1106-preview' answers at "
        f"{api.base_url} (no shutdown date announced)"
    ]


def test_a_silent_api_fails_within_seconds(monkeypatch, key):
    config = make_config(alpaca_eval="local")
    with serve(monkeypatch, model_faults={"gpt-4-0613": "timeout"}, timeout_sleep=3.0) as api:
        start = time.monotonic()
        with pytest.raises(JudgePreflightError, match="did not answer"):
            check_api_judges(config, api_judges(config), today=TODAY, timeout_s=0.3)
        elapsed = time.monotonic() - start
    assert elapsed < 2.5  # two tries of 0.3 s and one short backoff
    assert api.model_lookups == ["gpt-4-0613"] * (preflight.MAX_RETRIES + 1)


# --- which judges: the planned jobs, the skip switch -------------------------------------------


def test_only_judges_of_planned_jobs_are_checked(api):
    """`--until train_policy` plans no judge job: no key needed. A planned MT-Bench API job
    needs its judge only."""
    config = make_config()
    train = [("train_policy", {"variant": "dpo", "seed": "0"}), ("prepare_model", {})]
    assert check_before_run(config, train, today=TODAY) == []
    mt_job = ("judge_mt_bench_api", {"judge": MT_PAPER, "variant": "dpo", "seed": "0"})
    with pytest.raises(JudgePreflightError) as err:
        check_before_run(config, [*train, mt_job, mt_job], today=TODAY)
    assert "judges.mt_bench" in str(err.value) and "judges.alpaca_eval" not in str(err.value)
    assert api.seen == []


def test_skip_switch_asks_nothing_and_says_so(api, monkeypatch):
    monkeypatch.setenv(preflight.SKIP_ENV, "1")
    lines = check_before_run(make_config(), today=TODAY)
    assert len(lines) == 1 and "judge preflight skipped" in lines[0]
    assert "judges.alpaca_eval" in lines[0] and "judges.mt_bench" in lines[0]
    assert api.seen == []


# --- dry run: offline warnings -------------------------------------------------------------------


def test_offline_warning_only_once_the_registry_date_has_passed(api):
    config = make_config(max_prompts=4, questions_per_category=1)
    assert offline_warnings(config, today=dt.date(2026, 10, 22)) == []
    warnings = offline_warnings(config, today=dt.date(2026, 10, 23))
    assert len(warnings) == 2
    ae, mt = warnings
    assert "judges.alpaca_eval" in ae and "'gpt-4-1106-preview'" in ae and "2026-10-23" in ae
    assert f"{AE_SUB!r} (model 'gpt-4.1-2025-04-14')" in ae
    assert "24 requests = 2 variant(s) x 3 seed(s) x 4 prompts" in ae
    assert "judges.mt_bench" in mt and f"{MT_SUB!r} (model 'gpt-4.1-2025-04-14')" in mt
    assert "96 requests = 2 variant(s) x 3 seed(s) x 8 questions x 2 turns" in mt
    assert offline_warnings(make_config(alpaca_eval=AE_SUB, mt_bench=MT_SUB), today=TODAY) == []
    assert api.seen == []


# --- the pieces --------------------------------------------------------------------------------


def test_request_count_follows_the_config():
    assert request_count(make_config(), "alpaca_eval")[0] == 2 * 3 * 805
    assert request_count(make_config(), "mt_bench")[0] == 2 * 3 * 80 * 2
    tiny = make_config(max_prompts=4, questions_per_category=1)
    assert request_count(tiny, "alpaca_eval")[0] == 2 * 3 * 4
    assert request_count(tiny, "mt_bench")[0] == 2 * 3 * 8 * 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("not a date", None),
        (True, None),
        (float("nan"), None),
        ("2026-10-23", dt.date(2026, 10, 23)),
        ("2026-10-23T12:00:00+00:00", dt.date(2026, 10, 23)),
        (1792713600, dt.date(2026, 10, 23)),
        (1792713600.5, dt.date(2026, 10, 23)),
        ("1792713600", dt.date(2026, 10, 23)),
        (1792713600000, dt.date(2026, 10, 23)),  # milliseconds
    ],
)
def test_parse_shutdown_date(value, expected):
    assert parse_shutdown_date(value) == expected


def test_calibration_and_the_paper_outputs_are_counted_once_each(tmp_path):
    """Beyond the benchmark: the judge calibration's pairs (two orders with swap) and, when the
    run has the authors' files, their outputs (rows x items); neither is repeated."""
    from prefopt.judging.authors_outputs import annotated_rows

    config = make_config(alpaca_eval=AE_SUB, mt_bench=MT_SUB, max_prompts=4)
    config["judges"]["repeats"] = 3
    config["calibration"] = {"alpaca_eval": {"sources": ["a", "b"], "max_pairs": 8, "swap": True}}
    config["authors_outputs"] = {"variants": None, "max_items": None, "swap": False}
    config["mirror_dir"] = None  # downloads the authors' files
    count, how = preflight.request_count(config, "alpaca_eval")
    rows = len(annotated_rows(pd.read_csv("workflow/resources/paper/table1.csv")))
    assert rows == preflight.AUTHORS_OUTPUT_ROWS == 7
    assert count == 2 * 3 * 4 * 3 + 2 * 8 * 2 + 7 * 805
    assert how.endswith(
        "x 3 repeats + 32 (judge calibration: 2 file(s) x 8 pairs x 2 order(s)) + 5,635 "
        "(the paper's outputs: 7 row(s) x 805 items x 1 order(s))"
    )
    config["mirror_dir"] = str(tmp_path)  # a mirror without the authors' files
    config["authors_outputs"] = {"variants": ["dpo"], "max_items": 10, "swap": True}
    assert preflight.request_count(config, "alpaca_eval")[0] == 72 + 32
    (tmp_path / "authors_alpaca_eval").mkdir()
    assert preflight.request_count(config, "alpaca_eval")[0] == 72 + 32 + 20
    assert preflight.request_count(config, "mt_bench")[1].endswith("x 2 turns x 3 repeats")
    config["calibration"]["mt_bench"] = {"models": ["gpt-4", "llama-13b"], "max_questions": 16}
    assert preflight.request_count(config, "mt_bench")[0] == 2 * 3 * 80 * 2 * 3
    (tmp_path / "mt_bench_calibration").mkdir()
    count, how = preflight.request_count(config, "mt_bench")
    assert count == 2 * 3 * 80 * 2 * 3 + 2 * 16 * 2
    assert how.endswith("+ 64 (judge calibration: 2 model(s) x 16 questions x 2 turns)")
