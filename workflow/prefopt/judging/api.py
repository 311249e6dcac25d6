"""OpenAI-compatible API judge that loses nothing and never leaks its key.

Why this exists instead of alpaca_eval's / FastChat's own API callers:

* alpaca_eval returns an empty completion after its retries are exhausted and caches only at the
  end of a batch; FastChat writes ``$ERROR$`` and moves on. A long paid judging run must instead
  keep every answer the moment it arrives and stop loudly when the judge cannot be reached.
* Every request is keyed by a stable hash of (model, messages, params) in a per-item JSONL cache
  that is appended and fsynced after each answer, so a rerun after a crash, an interruption or a
  hard failure requests only what is missing.
* An item may be judged ``repeats`` times (``judges.repeats``: LLM judges are not deterministic,
  even at temperature 0). Each repeat is its own request with its own cache entry: repeat 1 keeps
  the key of a single judgment (caches written before repeats existed still hit), repeat r > 1
  adds ``"repeat": r`` to the hashed payload, never to the request itself.
* 429, 5xx, timeouts and connection errors are retried with exponential backoff; running out of
  retries, 401/403 (key, account) and malformed answers are hard failures that raise
  :class:`ApiJudgeError` naming the item.
* Any other HTTP error (400 content filter, 404, 422...) concerns one item: as alpaca_eval does, it
  becomes a *missing* annotation (preference null, MT-Bench score -1) with the error kind in the
  record (``"error": "HTTP 400 content_filter"``), never a blocked rule. It is cached as missing
  with its attempt count; a later run asks it once more (``max_missing_attempts`` = 2 asks in all),
  then it stays missing. ``max_consecutive_missing`` failures in a row with no answer between them
  look like a broken setup (wrong model name, endpoint): the run stops and caches none of them.
* Every record keeps the model name the server says it served (``response_model``); the
  front-ends carry it into the judgments as ``served_model``.
* The key is read from the environment only and is redacted from every message we log, raise or
  cache.
* ``base_url`` lets the same code talk to a local OpenAI-compatible server (vLLM, tests).

Two task front-ends sit on top: :func:`judge_alpaca_eval_pairs` (the ``alpaca_eval_gpt4_turbo_fn``
ranking annotator, reproduced from the vendored config) and :func:`judge_mt_bench` (FastChat
single-answer grading via :mod:`prefopt.judging.mt_bench`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openai

from prefopt.judging import ALPACA_EVAL_API_JUDGE
from prefopt.runtime import Progress

log = logging.getLogger(__name__)

#: Repository root of the vendored annotator configs.
RESOURCES_DIR = Path(__file__).resolve().parents[2] / "resources" / "alpaca_eval"
ALPACA_EVAL_ANNOTATOR = ALPACA_EVAL_API_JUDGE
DEFAULT_ALPACA_EVAL_CONFIG = RESOURCES_DIR / ALPACA_EVAL_ANNOTATOR / "configs.yaml"
#: HTTP statuses worth retrying (rate limit, server-side trouble).
RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
#: HTTP statuses about the key or the account, never one item: they stop the run.
FATAL_STATUS = frozenset({401, 403})
#: How many runs ask an item whose request failed with a non-retryable error.
MAX_MISSING_ATTEMPTS = 2
#: Items in a row without an answer after which the run stops as misconfigured.
MAX_CONSECUTIVE_MISSING = 10
#: Longest (redacted) server error message kept in a missing record.
ERROR_MESSAGE_CHARS = 300
REDACTED = "[REDACTED]"


class ApiJudgeError(RuntimeError):
    """A judge request failed for good; everything judged before it is in the cache."""

    def __init__(self, item_id: str, message: str) -> None:
        super().__init__(f"judging item {item_id!r} failed: {message}")
        self.item_id = item_id


@dataclass(frozen=True)
class JudgeItem:
    """One chat-completion request: ``params`` are extra create() arguments (temperature...).

    ``repeat`` (1-based) tells the repeated judgments of one item apart in the cache; it is not
    sent to the API."""

    item_id: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    repeat: int = 1


def request_key(
    model: str, messages: Sequence[dict[str, Any]], params: dict[str, Any], repeat: int = 1
) -> str:
    """Stable cache key: sha256 of canonical JSON of (model, messages, params), and of the
    repeat number for repeats after the first (repeat 1 is the key of a single judgment)."""
    if int(repeat) < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    body: dict[str, Any] = {"model": model, "messages": list(messages), "params": params}
    if int(repeat) > 1:
        body["repeat"] = int(repeat)
    payload = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def repeat_id(item_id: str, repeat: int) -> str:
    """The id of one repeat of an item: the item's own id for repeat 1, ``<id>#r<repeat>`` after."""
    return item_id if repeat == 1 else f"{item_id}#r{repeat}"


def with_repeats(item: JudgeItem, repeats: int) -> list[JudgeItem]:
    """The ``repeats`` requests of one item (same messages and params; repeats 1..k)."""
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return [
        JudgeItem(repeat_id(item.item_id, r), item.messages, item.params, r)
        for r in range(1, int(repeats) + 1)
    ]


class ApiJudgeClient:
    """Cached, retrying, key-safe chat-completions client for LLM judging.

    ``cache_path`` is a JSONL file, one line per answered request (or per request recorded as
    missing: ``error`` set, ``attempts`` counted; the last line of a key wins). Prices are USD per
    1k tokens and are used only for the estimate printed before a run (and the optional
    ``budget_usd``).
    """

    def __init__(
        self,
        *,
        model: str,
        cache_path: str | os.PathLike,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 8,
        backoff_base: float = 2.0,
        backoff_max: float = 120.0,
        timeout: float = 120.0,
        price_per_1k_prompt_tokens: float = 0.01,
        price_per_1k_completion_tokens: float = 0.03,
        default_completion_tokens: int = 512,
        max_workers: int = 1,
        budget_usd: float | None = None,
        max_missing_attempts: int = MAX_MISSING_ATTEMPTS,
        max_consecutive_missing: int = MAX_CONSECUTIVE_MISSING,
        allow_missing_key: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = os.environ.get(api_key_env)
        if not key:
            if not allow_missing_key:
                raise ApiJudgeError("<setup>", f"environment variable {api_key_env} is not set")
            key = "EMPTY"  # local OpenAI-compatible servers ignore the key
        self._api_key = key
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.cache_path = Path(cache_path)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.price_per_1k_prompt_tokens = price_per_1k_prompt_tokens
        self.price_per_1k_completion_tokens = price_per_1k_completion_tokens
        self.default_completion_tokens = default_completion_tokens
        self.max_workers = max(1, int(max_workers))
        self.budget_usd = budget_usd
        self.max_missing_attempts = max(1, int(max_missing_attempts))
        self.max_consecutive_missing = max(1, int(max_consecutive_missing))
        self._sleep = sleep
        self._lock = threading.Lock()
        self._progress: Progress | None = None  # set for each judge() call with requests to make
        self._requested, self._spent = 0, 0.0
        # missing records of the current streak (no answer since): cached only once an answer
        # or the end of the run shows that the judge itself works
        self._pending_missing: list[dict[str, Any]] = []
        self._client: openai.OpenAI | None = None
        self._cache: dict[str, dict[str, Any]] = self._load_cache()

    def __repr__(self) -> str:
        return (
            f"ApiJudgeClient(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r}, cache_path={str(self.cache_path)!r})"
        )

    # -- key safety -------------------------------------------------------------------------
    def redact(self, text: Any) -> str:
        """``text`` as a string with the API key (and bearer tokens) removed."""
        out = str(text)
        if self._api_key and self._api_key != "EMPTY":
            out = out.replace(self._api_key, REDACTED)
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1" + REDACTED, out)

    # -- cache ------------------------------------------------------------------------------
    def _load_cache(self) -> dict[str, dict[str, Any]]:
        """Read the JSONL cache; a torn last line (crash mid-write) is cut off, never parsed."""
        cache: dict[str, dict[str, Any]] = {}
        if not self.cache_path.exists():
            return cache
        raw = self.cache_path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            log.warning(
                "cache %s ends with a partial line (%d bytes); removing it",
                self.cache_path,
                len(raw) - cut,
            )
            with open(self.cache_path, "r+b") as fh:
                fh.truncate(cut)
            raw = raw[:cut]
        for n, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("cache %s line %d is not valid JSON; ignored", self.cache_path, n)
                continue
            cache[rec["key"]] = rec
        return cache

    def _append_cache(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        if self._api_key in line and self._api_key != "EMPTY":  # e.g. a server echoing it
            line = self.redact(line)
            record = json.loads(line)
        with self._lock:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.cache_path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._cache[record["key"]] = record

    def key_for(self, item: JudgeItem) -> str:
        return request_key(self.model, item.messages, item.params, item.repeat)

    def cached(self, item: JudgeItem) -> dict[str, Any] | None:
        """The cached answer (or missing record) for ``item``, or None."""
        return self._cache.get(self.key_for(item))

    def _to_request(self, key: str) -> bool:
        """Not cached, or cached as missing with asks left (a later run retries it once)."""
        rec = self._cache.get(key)
        if rec is None:
            return True
        return is_missing(rec) and int(rec.get("attempts", 1)) < self.max_missing_attempts

    # -- estimate ---------------------------------------------------------------------------
    def _dollars(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What these tokens cost at the client's prices."""
        return (
            prompt_tokens / 1000 * self.price_per_1k_prompt_tokens
            + completion_tokens / 1000 * self.price_per_1k_completion_tokens
        )

    def estimate(self, items: Sequence[JudgeItem], *, quiet: bool = False) -> dict[str, Any]:
        """Size and cost estimate (tokens ~ characters / 4) of the requests not yet cached."""
        todo = self._missing(items)
        prompt_chars = sum(
            len(json.dumps(it.messages, ensure_ascii=False))
            + len(json.dumps(it.params.get("tools", []), ensure_ascii=False))
            for it in todo
        )
        prompt_tokens = math.ceil(prompt_chars / 4)
        completion_tokens = sum(
            int(it.params.get("max_tokens", self.default_completion_tokens)) for it in todo
        )
        cost = self._dollars(prompt_tokens, completion_tokens)
        cached = [self._cache.get(self.key_for(it)) for it in items]
        est = {
            "model": self.model,
            "n_items": len({it.item_id for it in items}),
            "n_cached": sum(rec is not None for rec in cached),
            "n_cached_missing": sum(rec is not None and is_missing(rec) for rec in cached),
            "n_to_request": len(todo),
            "prompt_chars": prompt_chars,
            "est_prompt_tokens": prompt_tokens,
            "est_max_completion_tokens": completion_tokens,
            "est_cost_usd_upper": round(cost, 4),
        }
        if not quiet:
            msg = (
                f"[judge estimate] model={self.model} items={est['n_items']} "
                f"cached={est['n_cached']} (missing {est['n_cached_missing']}) "
                f"to_request={est['n_to_request']} "
                f"~prompt_tokens={prompt_tokens} max_completion_tokens={completion_tokens} "
                f"~cost<=${cost:.2f} (at ${self.price_per_1k_prompt_tokens}/1k in, "
                f"${self.price_per_1k_completion_tokens}/1k out)"
            )
            print(msg, file=sys.stderr, flush=True)
            log.info("%s", msg)
        return est

    def _missing(self, items: Sequence[JudgeItem]) -> list[JudgeItem]:
        seen: set[str] = set()
        todo = []
        for it in items:
            key = self.key_for(it)
            if not self._to_request(key) or key in seen:
                continue
            seen.add(key)
            todo.append(it)
        return todo

    # -- requests ---------------------------------------------------------------------------
    def _get_client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=0,  # retries are ours, so that they are counted and logged
                timeout=self.timeout,
            )
        return self._client

    def _backoff(self, attempt: int, err: Exception) -> float:
        delay = min(self.backoff_max, self.backoff_base * 2**attempt)
        response = getattr(err, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            try:
                delay = min(self.backoff_max, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return delay * (1.0 + 0.1 * random.random())

    def _request(self, item: JudgeItem) -> dict[str, Any]:
        """Send one request with retries; return the record to cache (an answer, or a missing
        record for an item-level HTTP error), or raise ApiJudgeError."""
        client = self._get_client()
        failure: str | None = None
        kind = message = ""
        for attempt in range(self.max_retries + 1):
            last: Exception
            try:
                resp = client.chat.completions.create(
                    model=self.model, messages=item.messages, **item.params
                )
                return self._record(item, resp)
            except (openai.APITimeoutError, openai.APIConnectionError) as err:
                last, retryable = err, True
                reason = f"{type(err).__name__}: {self.redact(err)}"
            except openai.APIStatusError as err:
                status = err.status_code
                if status not in RETRYABLE_STATUS and status not in FATAL_STATUS:
                    kind, message = error_kind(err), self.redact(err)[:ERROR_MESSAGE_CHARS]
                    # built outside the except block: no exception context is kept anywhere
                    break
                last, retryable = err, status in RETRYABLE_STATUS
                reason = f"HTTP {status}: {self.redact(err)}"
            except Exception as err:  # other client errors, or an answer without choices
                last, retryable = err, False
                reason = f"{type(err).__name__}: {self.redact(err)}"
            if not retryable:
                failure = reason
                break
            if attempt == self.max_retries:
                failure = f"gave up after {attempt + 1} attempts; last error {reason}"
                break
            delay = self._backoff(attempt, last)
            log.warning(
                "item %s: %s; retry %d/%d in %.2fs",
                item.item_id,
                reason,
                attempt + 1,
                self.max_retries,
                delay,
            )
            self._sleep(delay)
        if failure is None:  # an item-level HTTP error: no retry, no hard failure
            return self._missing_record(item, kind, message)
        # raised outside the except blocks so no exception context (which may hold the key) leaks
        log.error("item %s: hard failure: %s", item.item_id, failure)
        raise ApiJudgeError(item.item_id, str(failure))

    def _missing_record(self, item: JudgeItem, kind: str, message: str) -> dict[str, Any]:
        """The record of an item the judge refused for good (an item-level HTTP error)."""
        prev = self._cache.get(self.key_for(item))
        attempts = int(prev.get("attempts", 1)) + 1 if prev is not None and is_missing(prev) else 1
        log.warning(
            "item %s: %s (ask %d of at most %d); recorded as a missing annotation: %s",
            item.item_id,
            kind,
            attempts,
            self.max_missing_attempts,
            message,
        )
        return {
            "key": self.key_for(item),
            "item_id": item.item_id,
            "model": self.model,
            "response_model": None,
            "response_id": None,
            "params": item.params,
            "content": None,
            "tool_calls": [],
            "finish_reason": None,
            "usage": None,
            "error": kind,
            "error_message": message,
            "attempts": attempts,
            "tstamp": time.time(),
        }

    def _record(self, item: JudgeItem, resp: Any) -> dict[str, Any]:
        choice = resp.choices[0]
        message = choice.message
        tool_calls = [
            {"name": tc.function.name, "arguments": tc.function.arguments}
            for tc in (message.tool_calls or [])
        ]
        usage = resp.usage.model_dump() if getattr(resp, "usage", None) is not None else None
        return {
            "key": self.key_for(item),
            "item_id": item.item_id,
            "model": self.model,
            "response_model": getattr(resp, "model", None),
            "response_id": getattr(resp, "id", None),
            "params": item.params,
            "content": message.content,
            "tool_calls": tool_calls,
            "finish_reason": choice.finish_reason,
            "usage": usage,
            "tstamp": time.time(),
        }

    def _count(self, record: dict[str, Any]) -> None:
        """One request answered or refused: the progress line, with the dollars so far (from
        the usage the API reports, at the client's prices)."""
        if self._progress is None:
            return
        usage = record.get("usage") or {}
        with self._lock:
            self._spent += self._dollars(
                usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
            )
            self._requested += 1
            self._progress.update(self._requested, f"~${self._spent:.2f} so far")

    def _judge_one(self, item: JudgeItem, stop: threading.Event) -> None:
        if stop.is_set() or not self._to_request(self.key_for(item)):
            return
        record = self._request(item)
        self._count(record)
        if not is_missing(record):
            self._flush_missing()  # the judge answers: the streak's failures are the items'
            self._append_cache(record)
            log.debug("item %s judged", item.item_id)
            return
        with self._lock:
            self._pending_missing.append(record)
            streak = len(self._pending_missing)
        if streak >= self.max_consecutive_missing:
            raise ApiJudgeError(
                item.item_id,
                f"{streak} requests in a row got no answer (last: {record['error']}), which "
                "points to the setup (model name, endpoint, account) rather than the items; none "
                "of them was cached as missing",
            )

    def _flush_missing(self) -> None:
        with self._lock:
            pending, self._pending_missing = self._pending_missing, []
        for record in pending:
            self._append_cache(record)

    def judge(self, items: Sequence[JudgeItem]) -> dict[str, dict[str, Any]]:
        """Judge every item not in the cache; return ``{item_id: cached record}`` for all items.

        Items with identical (model, messages, params) are requested once. On a hard failure no
        new request is started, running ones finish and are cached, and the error is raised.
        """
        items = list(items)
        ids = [it.item_id for it in items]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids must be unique")
        est = self.estimate(items)
        if self.budget_usd is not None and est["est_cost_usd_upper"] > self.budget_usd:
            raise ApiJudgeError(
                "<budget>",
                f"estimated cost ${est['est_cost_usd_upper']:.2f} exceeds budget "
                f"${self.budget_usd:.2f}",
            )
        todo = self._missing(items)
        if todo:
            self._get_client()  # once, before any worker thread starts
        self._requested, self._spent = 0, 0.0
        self._progress = (
            Progress(f"judging with {self.model}", len(todo), "requests") if todo else None
        )
        stop = threading.Event()
        self._pending_missing = []
        try:
            if self.max_workers == 1:
                for it in todo:
                    self._judge_one(it, stop)
            else:
                with ThreadPoolExecutor(self.max_workers) as pool:
                    futures = [pool.submit(self._judge_one, it, stop) for it in todo]
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                    if any(f.exception() for f in done):
                        stop.set()
                    wait(futures)
                errors = [f.exception() for f in futures if f.exception() is not None]
                if errors:
                    raise errors[0]
        except BaseException:
            # a run that fails leaves its unconfirmed missing records uncached: the next run
            # asks them afresh (a refused request is typically not billed)
            self._pending_missing = []
            raise
        self._flush_missing()
        out = {it.item_id: self._cache[self.key_for(it)] for it in items}
        missing = [item_id for item_id, rec in out.items() if is_missing(rec)]
        if missing:
            log.warning(
                "%d of %d requests have no answer (recorded as missing): %s",
                len(missing),
                len(out),
                ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
            )
        served = sorted({str(r.get("response_model")) for r in out.values() if not is_missing(r)})
        if served:
            log.info("requested model %s; served by %s", self.model, ", ".join(served))
        return out


def is_missing(record: dict[str, Any]) -> bool:
    """True for a cached record of a request the judge refused (no answer to read)."""
    return record.get("error") is not None


def error_kind(err: openai.APIStatusError) -> str:
    """``HTTP <status>`` and the API's error code when it gives one (``content_filter``...): the
    kind a missing annotation records (the server's message is kept apart, redacted)."""
    code = getattr(err, "code", None)
    kind = f"HTTP {err.status_code}"
    return f"{kind} {code}" if isinstance(code, str) and code else kind


def response_text(record: dict[str, Any]) -> str:
    """Text of a cached answer the way alpaca_eval reads it: tool-call arguments win."""
    if record.get("tool_calls"):
        return record["tool_calls"][0]["arguments"]
    return record.get("content") or ""


# --------------------------------------------------------------------------------------------
# AlpacaEval front-end (alpaca_eval_gpt4_turbo_fn)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlpacaEvalAnnotator:
    """The pieces of an alpaca_eval annotator config that define the request and parsing."""

    name: str
    prompt_template: str
    config_model: str
    params: dict[str, Any]
    annotation_key: str
    model_1_name: str


def load_alpaca_eval_annotator(
    config_path: str | os.PathLike = DEFAULT_ALPACA_EVAL_CONFIG,
    name: str = ALPACA_EVAL_ANNOTATOR,
) -> AlpacaEvalAnnotator:
    """Read a vendored annotator config; the prompt path is resolved as alpaca_eval does."""
    import yaml

    config_path = Path(config_path)
    if config_path.is_dir():
        config_path = config_path / "configs.yaml"
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))[name]
    if cfg.get("fn_completion_parser") != "pipeline_meta_parser":
        raise ValueError(f"{name}: only the pipeline_meta_parser (json + ranking) is supported")
    template = (config_path.parents[1] / cfg["prompt_template"]).read_text(encoding="utf-8")
    kwargs = dict(cfg["completions_kwargs"])
    config_model = kwargs.pop("model_name")
    params = {"max_tokens": kwargs.pop("max_tokens", 2048), "top_p": 1.0, "temperature": 0.7}
    params.update(kwargs)  # temperature, tools, tool_choice from the config
    parsers = cfg["completion_parser_kwargs"]["parsers_to_kwargs"]
    return AlpacaEvalAnnotator(
        name=name,
        prompt_template=template,
        config_model=config_model,
        params=params,
        annotation_key=parsers["json_parser"]["annotation_key"],
        model_1_name=parsers["ranking_parser"]["model_1_name"],
    )


def make_alpaca_eval_prompt(template: str, example: dict[str, Any]) -> str:
    """Fill placeholders like alpaca_eval's ``utils.make_prompts`` (first occurrence, in order)."""
    prompt = template
    for key in dict.fromkeys(re.findall(r"{([^ \s]+?)}", template)):
        prompt = prompt.replace("{" + key + "}", str(example[key]), 1)
    return prompt


def prompt_to_chatml(prompt: str) -> list[dict[str, str]]:
    """ChatML text to OpenAI messages, as alpaca_eval's ``utils.prompt_to_chatml`` (no names)."""
    prompt = prompt.strip()
    if not (prompt.startswith("<|im_start|>") and prompt.endswith("<|im_end|>")):
        raise ValueError("prompt is not in ChatML format")
    messages = []
    for part in prompt.split("<|im_start|>")[1:]:
        role, content = part.split("\n", 1)
        if role.strip() not in ("system", "user", "assistant"):
            raise ValueError(f"unsupported ChatML role {role.strip()!r}")
        messages.append(
            {"content": content.split("<|im_end|>", 1)[0].strip(), "role": role.strip()}
        )
    return messages


def is_switched_outputs(instruction: str, seed: int = 0) -> bool:
    """alpaca_eval's per-instruction random swap of output_1/output_2 in the prompt."""
    return random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True])[0]


def parse_ranking(
    text: str, annotation_key: str = "ordered_models", model_1_name: str = "m"
) -> int | None:
    """alpaca_eval ``json_parser`` + ``ranking_parser``: 1 if ``model_1_name`` ranks first, 2 if
    second, None when the completion cannot be parsed."""
    try:
        if "```json" in text:
            text = re.search(r"```json(.*?)```", text, re.DOTALL).group(1)
        loaded = json.loads(text)
        ranking = loaded[annotation_key] if isinstance(loaded, dict) else loaded[0][annotation_key]
        if isinstance(ranking, str):
            ranking = ast.literal_eval(ranking)
        rank = [c for c in ranking if c["model"] == model_1_name][0]["rank"]
    except Exception:  # any malformed completion is a missing annotation, as in alpaca_eval
        return None
    return int(rank) if rank in (1, 2) else None


def _check_pairs(model_outputs: Sequence[dict], reference_outputs: Sequence[dict]) -> None:
    if len(model_outputs) != len(reference_outputs):
        raise ValueError(
            f"{len(model_outputs)} model outputs but {len(reference_outputs)} reference outputs"
        )
    for i, (m, r) in enumerate(zip(model_outputs, reference_outputs, strict=True)):
        if m["instruction"] != r["instruction"]:
            raise ValueError(f"instruction mismatch at index {i}")


def alpaca_eval_items(
    model_outputs: Sequence[dict[str, Any]],
    reference_outputs: Sequence[dict[str, Any]],
    annotator: AlpacaEvalAnnotator,
    *,
    seed: int = 0,
    item_prefix: str | None = None,
) -> list[tuple[int, JudgeItem | None, bool]]:
    """(index, request or None when both outputs are identical, switched) for every pair."""
    _check_pairs(model_outputs, reference_outputs)
    out = []
    for i, (m, r) in enumerate(zip(model_outputs, reference_outputs, strict=True)):
        switched = is_switched_outputs(m["instruction"], seed)
        if m["output"] == r["output"]:
            out.append((i, None, switched))
            continue
        first, second = (m["output"], r["output"]) if switched else (r["output"], m["output"])
        prompt = make_alpaca_eval_prompt(
            annotator.prompt_template,
            {"instruction": m["instruction"], "output_1": first, "output_2": second},
        )
        prefix = item_prefix or m.get("generator", "model")
        item = JudgeItem(f"{prefix}:{i}", prompt_to_chatml(prompt), dict(annotator.params))
        out.append((i, item, switched))
    return out


def judge_repeated(
    client: ApiJudgeClient, items: Sequence[JudgeItem], repeats: int = 1
) -> dict[str, list[dict[str, Any]]]:
    """Ask every item ``repeats`` times; ``{item_id: [record of repeat 1, ..., repeat k]}``.

    The requests go repeat by repeat (every item's first judgment, then every item's second...),
    so a run cut short leaves as many items as possible judged at least once; each repeat is
    cached on its own (:func:`request_key`), so a rerun asks only the repeats not yet answered.
    """
    plan = [with_repeats(it, repeats) for it in items]
    got = client.judge([reps[r] for r in range(int(repeats)) for reps in plan])
    return {reps[0].item_id: [got[rep.item_id] for rep in reps] for reps in plan}


def _served(records: Iterable[dict[str, Any]]) -> str | None:
    """The model(s) the API says answered, ';'-joined when repeats were served by several."""
    names = sorted({str(r["response_model"]) for r in records if r.get("response_model")})
    return ";".join(names) or None


def _first_error(records: Iterable[dict[str, Any]]) -> str | None:
    """The error kind of the first repeat the API refused, None when it answered every one."""
    return next((r["error"] for r in records if is_missing(r)), None)


def mean_preference(preferences: Sequence[float | None]) -> float | None:
    """The preference of an item judged several times: the mean of its readable verdicts (1..2;
    alpaca_eval's win rate takes fractional preferences), None when no repeat gave one."""
    valid = [float(p) for p in preferences if p is not None]
    return float(np.mean(valid)) if valid else None


def judge_alpaca_eval_pairs(
    client: ApiJudgeClient,
    model_outputs: Sequence[dict[str, Any]],
    reference_outputs: Sequence[dict[str, Any]],
    *,
    config_path: str | os.PathLike = DEFAULT_ALPACA_EVAL_CONFIG,
    seed: int = 0,
    item_prefix: str | None = None,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """Annotate (reference, model) pairs as alpaca_eval's ``alpaca_eval_gpt4_turbo_fn`` does.

    Returns alpaca_eval ``annotations.json`` records: ``output_1`` is the reference, ``output_2``
    the model, ``preference`` 1 (reference wins), 2 (model wins), 1.5 (identical outputs, not
    sent to the judge) or None: an unparseable judge answer (the raw answer is kept) or a
    request the API refused (``judge_error`` says how, e.g. ``HTTP 400 content_filter``).
    ``judge_model`` is the model requested, ``served_model`` the one the API says answered.

    With ``repeats`` k > 1 every pair is judged k times and the record stays one row per pair:
    ``preference`` is the mean of the readable verdicts (:func:`mean_preference`), and
    :data:`ALPACA_EVAL_REPEAT_KEYS` are added: ``preferences`` (the k verdicts, None for a
    repeat that failed), ``n_failed_repeats``, ``judge_errors`` (each repeat's API error kind or
    None) and ``preference_raw_completions``; ``preference_raw_completion`` is the first answer.
    ``judge_error`` is set only when no repeat gave a verdict (the first refusal's kind). With
    k = 1 the records are exactly those of a single judgment.
    """
    annotator = load_alpaca_eval_annotator(config_path)
    if client.model != annotator.config_model:
        log.warning(
            "judge model %r differs from the vendored config's %r",
            client.model,
            annotator.config_model,
        )
    plan = alpaca_eval_items(
        model_outputs, reference_outputs, annotator, seed=seed, item_prefix=item_prefix
    )
    answers = judge_repeated(client, [item for _, item, _ in plan if item is not None], repeats)
    records = []
    for i, item, switched in plan:
        m, r = model_outputs[i], reference_outputs[i]
        rec: dict[str, Any] = {
            "instruction": m["instruction"],
            "dataset": m.get("dataset", r.get("dataset")),
            "output_1": r["output"],
            "generator_1": r.get("generator"),
            "output_2": m["output"],
            "generator_2": m.get("generator"),
            "annotator": annotator.name,
            "preference": 1.5,
            "preference_raw_completion": None,
            "is_switched_outputs": switched,
            "judge_model": client.model,
            "served_model": None,
            "judge_error": None,
        }
        if item is None:  # identical outputs: a draw, never asked
            verdicts: list[tuple[float | None, str | None]] = [(1.5, None)] * int(repeats)
            errors: list[str | None] = [None] * int(repeats)
        else:
            reps = answers[item.item_id]
            verdicts = [_alpaca_verdict(ans, switched, annotator, item.item_id) for ans in reps]
            errors = [ans.get("error") for ans in reps]
            texts = [text for _, text in verdicts if text is not None]
            rec["preference"] = mean_preference([pref for pref, _ in verdicts])
            rec["preference_raw_completion"] = texts[0] if texts else None
            rec["served_model"] = _served(reps)
            rec["judge_error"] = None if rec["preference"] is not None else _first_error(reps)
        if int(repeats) > 1:
            prefs = [pref for pref, _ in verdicts]
            rec["preferences"] = prefs
            rec["n_failed_repeats"] = sum(pref is None for pref in prefs)
            rec["judge_errors"] = errors
            rec["preference_raw_completions"] = [text for _, text in verdicts]
        records.append(rec)
    return records


#: What a repeatedly judged AlpacaEval annotation adds (``judges.repeats`` > 1).
ALPACA_EVAL_REPEAT_KEYS = (
    "preferences",
    "n_failed_repeats",
    "judge_errors",
    "preference_raw_completions",
)


def _alpaca_verdict(
    ans: dict[str, Any], switched: bool, annotator: AlpacaEvalAnnotator, item_id: str
) -> tuple[float | None, str | None]:
    """(preference in the record's orientation or None, raw answer or None) of one answer."""
    if is_missing(ans):
        return None, None
    text = response_text(ans)
    pref = parse_ranking(text, annotator.annotation_key, annotator.model_1_name)
    if pref is None:
        log.warning("item %s: could not parse the judge's ranking", item_id)
        return None, text
    return float(3 - pref if switched else pref), text


# --------------------------------------------------------------------------------------------
# MT-Bench front-end (FastChat single-answer grading)
# --------------------------------------------------------------------------------------------


def mt_bench_items(
    questions: Iterable[dict[str, Any]],
    answers: dict[int, dict[str, Any]] | Sequence[dict[str, Any]],
    judge_prompts: dict[str, dict[str, Any]],
    reference_answers: dict[int, dict[str, Any]] | None,
    *,
    model_id: str,
) -> list[tuple[dict[str, Any], int, str, str, JudgeItem]]:
    """(question, turn, prompt_name, user_prompt, request) for every FastChat single match."""
    from prefopt.judging import mt_bench

    if not isinstance(answers, dict):
        answers = {a["question_id"]: a for a in answers}
    out = []
    for q, turn in mt_bench.iter_single_matches(questions):
        qid = q["question_id"]
        ref = (
            (reference_answers or {}).get(qid) if q["category"] in mt_bench.NEED_REF_CATS else None
        )
        system, user, name = mt_bench.build_judge_prompt(q, answers[qid], turn, judge_prompts, ref)
        params = {  # FastChat chat_completion_openai: n=1, temperature 0, max_tokens 2048
            "n": 1,
            "temperature": mt_bench.JUDGE_TEMPERATURE,
            "max_tokens": mt_bench.JUDGE_MAX_TOKENS,
        }
        item = JudgeItem(
            f"{model_id}:{qid}:turn{turn}", mt_bench.judge_messages(system, user), params
        )
        out.append((q, turn, name, user, item))
    return out


def judge_mt_bench(
    client: ApiJudgeClient,
    questions: Iterable[dict[str, Any]],
    answers: dict[int, dict[str, Any]] | Sequence[dict[str, Any]],
    judge_prompts: dict[str, dict[str, Any]],
    reference_answers: dict[int, dict[str, Any]] | None,
    *,
    model_id: str,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """FastChat ``model_judgment`` single rows for one model's answers (both turns).

    ``reference_answers`` are the judge's reference answers by question id (FastChat uses the
    file named after the judge model, ``gpt-4.jsonl``). The timestamp is that of the cached
    answer, so a rerun reproduces the file byte for byte. A request the API refused is written
    as FastChat writes a failed judgment (``$ERROR$``, score -1) with ``judge_error`` set.

    With ``repeats`` k > 1 every turn is graded k times and stays one row: ``score`` is the
    median of the readable ratings (:func:`prefopt.judging.mt_bench.median_score`; FastChat's
    maintainers recommend the median of several gradings), ``judgment`` the first answer with a
    readable rating, and :data:`prefopt.judging.mt_bench.REPEAT_KEYS` are added: ``scores`` (the
    k ratings, None for a repeat that failed), ``n_failed_repeats``, ``judge_errors`` and
    ``judgments``. Only when no repeat gave a rating is the row a failure (score -1), as today.
    """
    from prefopt.judging import mt_bench

    plan = mt_bench_items(questions, answers, judge_prompts, reference_answers, model_id=model_id)
    got = judge_repeated(client, [item for *_, item in plan], repeats)
    rows = []
    for q, turn, name, user, item in plan:
        reps = got[item.item_id]
        texts = [
            mt_bench.API_ERROR_OUTPUT if is_missing(a) else a.get("content") or "" for a in reps
        ]
        scores = [
            -1.0 if is_missing(a) else mt_bench.extract_rating(t)
            for a, t in zip(reps, texts, strict=True)
        ]
        score = mt_bench.median_score(scores)
        shown = next((t for t, x in zip(texts, scores, strict=True) if x >= 0), texts[0])
        row = mt_bench.judgment_record(
            question_id=q["question_id"],
            model=model_id,
            judge_model=client.model,
            prompt_name=name,
            user_prompt=user,
            judgment=shown,
            score=score,
            turn=turn,
            tstamp=reps[0]["tstamp"],
            served_model=_served(reps),
            judge_error=None if score >= 0 else _first_error(reps),
        )
        if int(repeats) > 1:
            row["scores"] = [x if x >= 0 else None for x in scores]
            row["n_failed_repeats"] = sum(x < 0 for x in scores)
            row["judge_errors"] = [a.get("error") for a in reps]
            row["judgments"] = texts
        rows.append(row)
    return rows
