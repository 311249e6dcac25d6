"""Before the first job of a real run: does every API judge the run will call still answer?

Why: a run spends days of GPU on training and generation before its first judge request. The
paper's judges (``gpt-4-1106-preview`` via alpaca_eval's ``alpaca_eval_gpt4_turbo_fn``,
``gpt-4-0613`` for MT-Bench) have been shut down by their provider, so without this check such a
run would fail only at the end. :func:`check_before_run` is called by the workflow's ``onstart:``
handler (workflow/rules/common.smk), which Snakemake (9.27, ``Workflow.execute``) runs in a real
run after planning the jobs (and creating ``--sdm conda`` environments) and before scheduling
any: not in a dry run, not with ``--no-hooks``, not in the processes that run single jobs. An
exception there stops the run, exit status 1, with no job started. For each API judge that a
planned job will call (``--until train_policy`` calls none, so needs no key) it checks, in seconds:

* the key is in the environment (:data:`~prefopt.judging.registry.API_KEY_ENV`; its value is never
  printed);
* ``models.retrieve(model)`` answers: the openai SDK reads ``OPENAI_BASE_URL`` itself, so a
  compatible endpoint or a proxy is asked instead of OpenAI when it is set;
* any ``shutdown_date`` the API reports for the model is still in the future.

Otherwise it raises :class:`JudgePreflightError`, naming the model, the config key that chooses it
(``judges.alpaca_eval`` / ``judges.mt_bench``), the registry's substitutes with their models, and
what judging this run would cost with each (:func:`request_count`, :data:`TOKENS_PER_REQUEST`).

A dry run stays offline: :func:`offline_warnings` compares the registry's ``shutdown`` dates of
the configured judges with today's date and asks nothing. The workflow prints them when it is
read by the scheduling process, which cannot tell a dry run from a real one at that point, so a
real run prints them too, before its check.

Escape: ``PREFOPT_SKIP_JUDGE_PREFLIGHT=1`` skips the API check (e.g. every judgment is already in
the judge's cache, or a proxy serves the model but not the ``/models`` route); the run then fails
at its first judge request if the judge does not answer.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prefopt.config import ConfigError
from prefopt.judging.registry import API_KEY_ENV, BENCHMARKS, JudgeSpec, judge_spec, spec_of

#: Set to 1 to skip the API check before a real run (a note says so; nothing else changes).
SKIP_ENV = "PREFOPT_SKIP_JUDGE_PREFLIGHT"
#: Seconds one models.retrieve request may take (connect and read), and retries after a failed
#: one: with at most one distinct model per benchmark the whole check ends well within a minute.
TIMEOUT_S = 5.0
MAX_RETRIES = 1
#: Longest server message quoted in an error.
MESSAGE_CHARS = 400
#: AlpacaEval 1.0's instructions (data.alpaca_eval.max_prompts: null means all of them).
ALPACA_EVAL_PROMPTS = 805
#: MT-Bench questions per category (data.mt_bench.questions_per_category: null means all) and the
#: turns each answer has, each judged by one request (FastChat single-answer grading).
MT_BENCH_QUESTIONS_PER_CATEGORY = 10
MT_BENCH_TURNS = 2
#: Table 1 rows whose outputs the authors published (prefopt.judging.authors_outputs).
AUTHORS_OUTPUT_ROWS = 7
#: Estimated (input, output) tokens of one judge request, by protocol. An estimate for the order
#: of magnitude of a run's bill, not a quote:
#:
#: * ``alpaca_eval_gpt4_turbo_fn``: the vendored ranking prompt (1,206 characters, ~300 tokens)
#:   and its function schema (~150), the instruction with text-davinci-003's reference answer
#:   (~300), the policy's answer (~500; ``generation.alpaca_eval.max_new_tokens`` caps it at
#:   1,024 in config/config.yaml); out: the annotator config's ``max_tokens``, 100 (the call
#:   takes ~40).
#: * ``fastchat_single``: FastChat's grading prompt (~250 tokens), the question (~100), the
#:   reference answer of math, reasoning and coding questions (~150 on average), the answer
#:   (~500, and the second turn carries both turns): ~1,500 averaged over the two turns; out: the
#:   judge's explanation and ``[[rating]]``, ~300 (``max_tokens`` 2,048 is rarely reached).
TOKENS_PER_REQUEST: dict[str, tuple[int, int]] = {
    "alpaca_eval_gpt4_turbo_fn": (1300, 100),
    "fastchat_single": (1500, 300),
}
#: Where the registry lives, for the messages.
REGISTRY_MODULE = "prefopt.judging.registry"


class JudgePreflightError(ConfigError):
    """An API judge of the run cannot be asked: raised before any job starts."""


def _today(today: dt.date | None) -> dt.date:
    return today or dt.datetime.now(dt.UTC).date()


# --- which judges, and what they cost --------------------------------------------------------


def configured_api_judges(config: Mapping[str, Any]) -> list[tuple[str, JudgeSpec]]:
    """(benchmark, judge) of every API judge the config names (``judges.<benchmark>``)."""
    judges = config["judges"]
    specs = [(b, judge_spec(b, judges[b])) for b in BENCHMARKS if b in judges]
    return [(b, spec) for b, spec in specs if spec.is_api]


def judges_of_jobs(jobs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, JudgeSpec]]:
    """(benchmark, judge) of every API judge the given jobs will call, each once.

    A job calls an API judge when its ``judge`` wildcard names one: API judge ids are unique
    across benchmarks (prefopt.judging.registry), so the id alone gives the record and its
    benchmark, whatever the rule (``judge_alpaca_eval_api``, ``judge_mt_bench_api``,
    ``judge_calibration_alpaca_eval_api``, or a later one). Local-judge rules have no ``judge``
    wildcard, and ``local`` is no API judge.
    """
    found: dict[str, JudgeSpec] = {}
    for _rule_name, wildcards in jobs:
        spec = spec_of(str(dict(wildcards).get("judge", "")))
        if spec is not None:
            found[spec.id] = spec
    return [(spec.benchmark, spec) for spec in found.values()]


def jobs_of_dag(dag: Any) -> list[tuple[str, dict[str, Any]]]:
    """(rule name, wildcards) of every job Snakemake's DAG will run (``dag.needrun_jobs()``);
    none under ``--touch``, which runs no job and so asks no judge."""
    if getattr(getattr(dag, "workflow", None), "touch", False):
        return []
    return [(job.rule.name, dict(job.wildcards)) for job in dag.needrun_jobs()]


def request_count(config: Mapping[str, Any], benchmark: str) -> tuple[int, str]:
    """Judge requests of the whole run for `benchmark`, and how they were counted.

    AlpacaEval: one request per (variant, seed, prompt); MT-Bench: one per (variant, seed,
    question, turn). From ``run.variants``, ``run.seeds``, ``data.alpaca_eval.max_prompts`` and
    ``data.mt_bench.questions_per_category`` (null: all), times ``judges.repeats`` (each item
    judged k times; "x k repeats" in the text when k > 1), plus the requests of
    :func:`other_requests` (judge calibration, the paper's outputs). Retries come on top.
    """
    variants, seeds = len(config["run"]["variants"]), len(config["run"]["seeds"])
    data = config.get("data", {})
    runs = f"{variants} variant(s) x {seeds} seed(s)"
    if benchmark == "alpaca_eval":
        prompts = (data.get("alpaca_eval") or {}).get("max_prompts") or ALPACA_EVAL_PROMPTS
        prompts = min(int(prompts), ALPACA_EVAL_PROMPTS)
        count, how = variants * seeds * prompts, f"{runs} x {prompts} prompts"
    elif benchmark == "mt_bench":
        from prefopt.judging.mt_bench import CATEGORIES

        per = (data.get("mt_bench") or {}).get("questions_per_category")
        per = min(int(per or MT_BENCH_QUESTIONS_PER_CATEGORY), MT_BENCH_QUESTIONS_PER_CATEGORY)
        questions = per * len(CATEGORIES)
        count = variants * seeds * questions * MT_BENCH_TURNS
        how = f"{runs} x {questions} questions x {MT_BENCH_TURNS} turns"
    else:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {list(BENCHMARKS)}")
    repeats = int((config.get("judges") or {}).get("repeats") or 1)  # judges.repeats
    if repeats > 1:
        count, how = count * repeats, f"{how} x {repeats} repeats"
    for extra, what in other_requests(config, benchmark):
        count, how = count + extra, f"{how} + {extra:,} ({what})"
    return count, how


def other_requests(config: Mapping[str, Any], benchmark: str) -> list[tuple[int, str]]:
    """The judge's requests beyond the benchmark judging, each once (not repeated): for
    MT-Bench, the judge calibration's answers (``calibration.mt_bench``: models x questions x 2
    turns, when the files are downloaded or in the mirror); for AlpacaEval, the calibration's
    pairs (``calibration.alpaca_eval``: each source file's pairs, in two orders with ``swap``)
    and the paper authors' outputs judged again (``authors_outputs``: rows x items, two orders
    with ``swap``), when the run has the authors' files (downloaded with ``mirror_dir: null``,
    or in the mirror)."""
    if benchmark == "mt_bench":
        cal = (config.get("calibration") or {}).get("mt_bench") or {}
        mirror = config.get("mirror_dir")
        if not cal.get("models") or (
            mirror and not (Path(mirror) / "mt_bench_calibration").is_dir()
        ):
            return []
        per = min(int(cal.get("max_questions") or 80), 80)
        what = f"judge calibration: {len(cal['models'])} model(s) x {per} questions x 2 turns"
        return [(len(cal["models"]) * per * 2, what)]
    if benchmark != "alpaca_eval":
        return []
    out = []
    cal = (config.get("calibration") or {}).get("alpaca_eval") or {}
    if cal.get("sources"):
        files, per = len(cal["sources"]), min(int(cal.get("max_pairs") or 805), 805)
        orders = 2 if cal.get("swap", True) else 1
        what = f"judge calibration: {files} file(s) x {per} pairs x {orders} order(s)"
        out.append((files * per * orders, what))
    authors = config.get("authors_outputs")
    mirror = config.get("mirror_dir")
    has_files = not mirror or (Path(mirror) / "authors_alpaca_eval").is_dir()
    if authors is not None and has_files:
        rows = len(authors.get("variants") or range(AUTHORS_OUTPUT_ROWS))
        per = min(int(authors.get("max_items") or ALPACA_EVAL_PROMPTS), ALPACA_EVAL_PROMPTS)
        orders = 2 if authors.get("swap") else 1
        what = f"the paper's outputs: {rows} row(s) x {per} items x {orders} order(s)"
        out.append((rows * per * orders, what))
    return out


def estimated_cost(spec: JudgeSpec, requests: int) -> float | None:
    """USD for `requests` requests to `spec` (None: price or token estimate unknown)."""
    tokens = TOKENS_PER_REQUEST.get(spec.protocol)
    if spec.price_per_mtok is None or tokens is None:
        return None
    (tin, tout), (pin, pout) = tokens, spec.price_per_mtok
    return requests * (tin * pin + tout * pout) / 1e6


def cost_text(spec: JudgeSpec, config: Mapping[str, Any], benchmark: str) -> str:
    """What judging the run with `spec` costs, e.g. ``~$74 (21,735 requests = 9 variant(s) x 3
    seed(s) x 805 prompts; est. ~1,300 input + 100 output tokens each at $2/$8 per 1M)``."""
    requests, how = request_count(config, benchmark)
    cost = estimated_cost(spec, requests)
    if cost is None:
        return f"cost unknown ({requests:,} requests = {how}; no price in {REGISTRY_MODULE})"
    (tin, tout), (pin, pout) = TOKENS_PER_REQUEST[spec.protocol], spec.price_per_mtok
    dollars = f"~${cost:,.0f}" if cost >= 10 else f"~${cost:.2f}"
    return (
        f"{dollars} ({requests:,} requests = {how}; est. ~{tin:,} input + {tout:,} output tokens "
        f"each at ${pin:g}/${pout:g} per 1M)"
    )


def _alternatives(spec: JudgeSpec, config: Mapping[str, Any], benchmark: str) -> list[str]:
    """The lines naming the substitutes of `spec` (model and cost) and the local judge."""
    key = f"judges.{benchmark}"
    lines = [f"  estimated cost of judging this run with {spec.model!r}: "]
    lines[0] += cost_text(spec, config, benchmark)
    if spec.substitutes:
        lines.append(
            f"  documented substitutes (same prompt and parser, another model; set {key} to one):"
        )
        for sub_id in spec.substitutes:
            sub = judge_spec(benchmark, sub_id)
            lines.append(
                f"    - {sub.id!r} (model {sub.model!r}): {cost_text(sub, config, benchmark)}"
            )
    else:
        lines.append(f"  no substitute is documented for {spec.id!r} in {REGISTRY_MODULE}")
    lines.append(f"  or {key}: local (the local judge: no API, no cost; not the paper's judge)")
    return lines


def _judge_head(benchmark: str, spec: JudgeSpec) -> str:
    paper = " (the paper's judge)" if spec.paper else ""
    return f"config key judges.{benchmark} = {spec.id!r}{paper} asks the model {spec.model!r}"


# --- dry run: offline ------------------------------------------------------------------------


def offline_warnings(config: Mapping[str, Any], today: dt.date | None = None) -> list[str]:
    """Warnings for configured API judges whose registry ``shutdown`` date is not in the future.

    Offline (for dry runs, which must not need a key or the network): the registry's date may be
    stale either way, which is why a real run asks the API itself (:func:`check_before_run`).
    """
    day = _today(today)
    out = []
    for benchmark, spec in configured_api_judges(config):
        if spec.shutdown is None or dt.date.fromisoformat(spec.shutdown) > day:
            continue
        lines = [
            f"warning: {_judge_head(benchmark, spec)}, which its provider shut down on "
            f"{spec.shutdown} ({REGISTRY_MODULE}). A real run asks the API before its first job "
            "and stops there if the model does not answer.",
            *_alternatives(spec, config, benchmark),
        ]
        out.append("\n".join(lines))
    return out


# --- real run: ask the API --------------------------------------------------------------------


def parse_shutdown_date(value: Any) -> dt.date | None:
    """A model's ``shutdown_date`` as a date: an ISO date (or date-time) string, or a unix
    timestamp in seconds (or milliseconds), as int, float or digit string. None when absent or
    unreadable: the SDK types it as an optional string, and a compatible server may send either."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            try:
                return dt.date.fromisoformat(text[:10])
            except ValueError:
                return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        seconds = value / 1000 if value > 1e11 else value  # 1e11 s is the year 5138
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC).date()
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[REDACTED]") if secret else text


def _endpoint(client: Any) -> str:
    """The API base URL the client asks, without any user:password part."""
    parts = urlsplit(str(getattr(client, "base_url", "")))
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc)).rstrip("/")


def _make_client(api_key: str, timeout_s: float) -> Any:
    try:
        import openai
    except ImportError as err:
        raise JudgePreflightError(
            "judge preflight: the `openai` package is not importable in the Python that runs "
            f"Snakemake ({err}); install the project's requirements there, or set {SKIP_ENV}=1 "
            "to skip the check"
        ) from None
    # no base_url: the SDK reads OPENAI_BASE_URL itself (a compatible endpoint or a proxy)
    return openai.OpenAI(api_key=api_key, timeout=timeout_s, max_retries=MAX_RETRIES)


def _model_problem(
    client: Any, model: str, api_key: str, day: dt.date, timeout_s: float
) -> tuple[str | None, str]:
    """(why `model` cannot be used or None, a note for the log) after one models.retrieve."""
    import openai

    where = _endpoint(client)
    try:
        info = client.models.retrieve(model)
    except openai.APIStatusError as err:
        # the SDK keeps the body's "error" object: {"message", "type", "param", "code"}
        body = err.body if isinstance(err.body, dict) else {}
        message = str(body.get("message") or err.body or err)[:MESSAGE_CHARS]
        why = f"HTTP {err.status_code}{' ' + err.code if err.code else ''}: {message}"
        if err.status_code in (401, 403):
            why += f" (the key in {API_KEY_ENV} was refused)"
        return _redact(f"the API at {where} does not serve it: {why}", api_key), ""
    except openai.APIConnectionError as err:  # timeouts included
        cause = f" ({type(err.__cause__).__name__})" if err.__cause__ is not None else ""
        why = (
            f"the API at {where} did not answer ({type(err).__name__}{cause}; "
            f"{timeout_s:g} s per try, {MAX_RETRIES + 1} tries)"
        )
        return _redact(why, api_key), ""
    except Exception as err:  # anything else stops the run as well, with its reason
        why = f"asking the API at {where} failed: {type(err).__name__}: {err}"
        return _redact(why[:MESSAGE_CHARS], api_key), ""
    raw = getattr(info, "shutdown_date", None)
    extra = getattr(info, "model_extra", None) or {}
    if raw is None and isinstance(extra, dict):
        raw = extra.get("shutdown_date")
    shutdown = parse_shutdown_date(raw)
    if shutdown is not None and shutdown <= day:
        return (
            f"the API at {where} reports its shutdown_date {shutdown.isoformat()}, which is not in "
            f"the future (today is {day.isoformat()})"
        ), ""
    if shutdown is not None:
        note = f"shuts down on {shutdown.isoformat()}"
    elif raw not in (None, ""):
        note = f"shutdown_date {_redact(str(raw), api_key)!r} unreadable, not checked"
    else:
        note = "no shutdown date announced"
    return None, f"{model!r} answers at {where} ({note})"


def check_api_judges(
    config: Mapping[str, Any],
    judges: Iterable[tuple[str, JudgeSpec]],
    *,
    today: dt.date | None = None,
    timeout_s: float = TIMEOUT_S,
) -> list[str]:
    """Check `judges` ((benchmark, API judge) pairs) against the API; return log lines.

    Raises :class:`JudgePreflightError` listing every judge that cannot be used, each with its
    model, its config key, the substitutes and the estimated cost. Reads the key from
    ``OPENAI_API_KEY`` (and the endpoint, through the SDK, from ``OPENAI_BASE_URL``); the key's
    value appears in no message. Each distinct model is asked once.
    """
    judges = [(b, s) for b, s in judges if s.is_api]
    if not judges:
        return []
    day = _today(today)
    api_key = os.environ.get(API_KEY_ENV, "").strip()
    problems: list[tuple[str, JudgeSpec, str]] = []
    notes: list[str] = []
    if not api_key:
        why = (
            f"the environment variable {API_KEY_ENV} is not set (or empty): no request can be made"
        )
        problems = [(b, s, why) for b, s in judges]
    else:
        client = _make_client(api_key, timeout_s)
        asked: dict[str, tuple[str | None, str]] = {}
        for benchmark, spec in judges:
            if spec.model not in asked:
                asked[spec.model] = _model_problem(client, spec.model, api_key, day, timeout_s)
            why, note = asked[spec.model]
            if why is None:
                notes.append(f"judge preflight: judges.{benchmark} = {spec.id!r}: {note}")
            else:
                problems.append((benchmark, spec, why))
    if problems:
        parts = [
            "judge preflight failed: an API judge of this run cannot be asked, so the run stops "
            "before its first job (prefopt.judging.preflight)."
        ]
        for benchmark, spec, why in problems:
            parts.append(f"* {_judge_head(benchmark, spec)}: {why}.")
            parts.extend(_alternatives(spec, config, benchmark))
        parts.append(
            f"Set the config key(s) named above, e.g. in an overlay layered on config/config.yaml "
            f"(--configfile overlay.yaml holding `judges: {{{problems[0][0]}: <id>}}`); "
            f"{API_KEY_ENV} holds the key, OPENAI_BASE_URL an OpenAI-compatible endpoint. "
            f"{SKIP_ENV}=1 skips this check."
        )
        raise JudgePreflightError("\n".join(parts))
    return notes


def check_before_run(
    config: Mapping[str, Any],
    jobs: Iterable[tuple[str, Mapping[str, Any]]] | None = None,
    *,
    today: dt.date | None = None,
    timeout_s: float = TIMEOUT_S,
) -> list[str]:
    """The workflow's check before the first job of a real run; returns log lines.

    `jobs`: (rule name, wildcards) of the jobs this invocation will run (:func:`jobs_of_dag`), so
    that e.g. ``--until train_policy`` needs no key; None checks every judge the config names.
    ``PREFOPT_SKIP_JUDGE_PREFLIGHT=1`` skips the check (and says so).
    """
    judges = configured_api_judges(config) if jobs is None else judges_of_jobs(jobs)
    if not judges:
        return []
    if os.environ.get(SKIP_ENV, "").strip() == "1":
        names = ", ".join(f"judges.{b} = {s.id!r}" for b, s in judges)
        return [f"judge preflight skipped ({SKIP_ENV}=1): {names} not checked"]
    return check_api_judges(config, judges, today=today, timeout_s=timeout_s)
