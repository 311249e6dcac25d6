"""The judge preflight through the real Snakemake: a run whose API judge cannot be asked stops
before its first job, naming why; a dry run asks nothing; a run that plans no judge job needs no
key. The API is ``standins.FakeOpenAI`` on 127.0.0.1 (``OPENAI_BASE_URL``), which records every
request. No job runs but one data preparation (seconds): the failures come before any job.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path

import pytest
from helpers import copy_workflow, run_snakemake, snakemake_env
from standins import FakeOpenAI

from prefopt.judging import ALPACA_EVAL_API_JUDGE, MT_BENCH_API_JUDGE
from prefopt.judging.preflight import SKIP_ENV
from prefopt.judging.registry import API_KEY_ENV, paper_judge

TINY = "tests/config.tiny.yaml"
#: The tiny run (2 variants x 1 seed, 4 prompts, 8 questions) judged by the paper's API judges.
API_OVERLAY = "api_judges.yaml"
CONFIG = ("--configfile", TINY, API_OVERLAY)
AE_MODEL, MT_MODEL = paper_judge("alpaca_eval").model, paper_judge("mt_bench").model
#: Every judge above is asked for by a planned job; a substitute's model is what the API knows.
KNOWN_MODEL = "gpt-4.1-2025-04-14"


@pytest.fixture(scope="module")
def work(module_tmp_path):
    work = copy_workflow(module_tmp_path / "repo")
    (work / API_OVERLAY).write_text(
        f"judges: {{alpaca_eval: {ALPACA_EVAL_API_JUDGE}, mt_bench: {MT_BENCH_API_JUDGE}}}\n"
    )
    return work


def env_of(**extra: str) -> dict[str, str]:
    """The test's environment without any OpenAI setting of the caller's, plus `extra`."""
    env = snakemake_env(PREFOPT_MIRROR="", PATH=os.defpath)
    env = {k: v for k, v in env.items() if not k.startswith("OPENAI_") and k != SKIP_ENV}
    return {**env, **extra}


def results_files(work: Path) -> set[str]:
    folder = work / "results"
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def assert_no_job_started(work: Path, before: set[str], out: str) -> None:
    assert results_files(work) == before, "a job wrote results"
    started = re.findall(r"^(?:local)?rule (\w+):$", out, flags=re.M)
    assert started == [], f"jobs were started: {started}"
    assert "Finished jobid" not in out


def test_no_key_stops_the_run_before_any_job_naming_the_variable(work):
    before = results_files(work)
    start = time.monotonic()
    run = run_snakemake(work, "--cores", "1", *CONFIG, env=env_of(), timeout=120)
    elapsed = time.monotonic() - start
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert elapsed < 60, f"the run took {elapsed:.0f} s to stop"
    assert f"environment variable {API_KEY_ENV} is not set" in out, out[-3000:]
    assert "judges.alpaca_eval" in out and "judges.mt_bench" in out
    assert_no_job_started(work, before, out)


def test_unknown_model_stops_the_run_naming_model_and_config_key(work):
    sentinel = "sk-preflight-SENTINEL-" + "0123456789abcdef" * 2
    before = results_files(work)
    with FakeOpenAI(models={KNOWN_MODEL: {}}, lifetime_s=120) as api:
        env = env_of(**{API_KEY_ENV: sentinel, "OPENAI_BASE_URL": api.base_url})
        start = time.monotonic()
        run = run_snakemake(work, "--cores", "1", *CONFIG, env=env, timeout=120)
        elapsed = time.monotonic() - start
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-3000:]
    assert elapsed < 60, f"the run took {elapsed:.0f} s to stop"
    for benchmark, judge, model in [
        ("alpaca_eval", ALPACA_EVAL_API_JUDGE, AE_MODEL),
        ("mt_bench", MT_BENCH_API_JUDGE, MT_MODEL),
    ]:
        assert f"config key judges.{benchmark} = {judge!r}" in out, out[-3000:]
        assert f"The model `{model}` does not exist" in out
    assert "HTTP 404 model_not_found" in out and f"(model {KNOWN_MODEL!r})" in out
    assert sentinel not in out
    assert sorted(api.model_lookups) == sorted([AE_MODEL, MT_MODEL])
    assert api.total == 0  # no chat completion: no judge job ran
    assert_no_job_started(work, before, out)


def test_dry_run_asks_nothing_and_needs_no_key(work):
    with FakeOpenAI(lifetime_s=120) as api:
        env = env_of(OPENAI_BASE_URL=api.base_url)
        run = run_snakemake(work, "-n", *CONFIG, env=env, timeout=120)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert re.search(r"^judge_alpaca_eval_api\s+2$", run.stdout, flags=re.M), run.stdout[-3000:]
    assert api.seen == []
    shutdown = paper_judge("alpaca_eval").shutdown
    if shutdown and dt.date.today() >= dt.date.fromisoformat(shutdown):
        assert f"asks the model {AE_MODEL!r}, which its provider shut down" in run.stderr
        assert f"asks the model {MT_MODEL!r}, which its provider shut down" in run.stderr


def test_a_run_that_plans_no_judge_job_needs_no_key(work):
    """As `--until train_policy` would: the judges are configured, but no planned job calls one."""
    with FakeOpenAI(lifetime_s=120) as api:
        env = env_of(OPENAI_BASE_URL=api.base_url)
        run = run_snakemake(
            work, "--cores", "1", *CONFIG, "--until", "prepare_alpaca_eval", env=env, timeout=300
        )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert (work / "results" / "data" / "alpaca_eval.json").is_file()
    assert api.seen == []
