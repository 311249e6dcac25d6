"""Every judge a run may name, one record each: what it asks, how, and whether it still answers.

A benchmark's judge is a config value (``judges.alpaca_eval``, ``judges.mt_bench``) naming a
record here; the record's id is the ``{judge}`` wildcard and the folder of its judgments. The
paper's two API judges are kept (their numbers are the ones to compare with) and marked with the
date their provider shut the model down, so a run that names one stops before its first job
(:mod:`prefopt.judging.preflight`) and names the substitutes listed here. Substitutes ask the same
prompt with the same parser; only the model differs, so their agreement with the retired judge can
be measured on the same pairs (rule ``judge_calibration``).

To add a judge: one :class:`JudgeSpec` in :data:`REGISTRY`; config validation, the rules'
wildcard constraints, the preflight and every table's judge label follow from it.

Dates: OpenAI's deprecations page (2026-04-22 notice, "Legacy GPT model snapshots") shuts
``gpt-4-0613`` down on 2026-10-23; ``gpt-4-1106-preview`` is a preview snapshot retired no later
than that (preview models may go on two weeks' notice). Read from public copies of the page; the
preflight asks the API itself (``models.retrieve``) before every real run, so a stale date here
never lets a dead judge through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: The probability-reading judge on a local model (no API key, CPU-friendly).
LOCAL_JUDGE = "local"
#: How a judge is asked and its answer read.
PROTOCOLS = {
    "local_probability": (
        "the local model's probability of each verdict token (prefopt.judging.local)"
    ),
    "alpaca_eval_gpt4_turbo_fn": (
        "alpaca_eval's alpaca_eval_gpt4_turbo_fn annotator: ranking prompt, function call, "
        "vendored in workflow/resources/alpaca_eval/"
    ),
    "fastchat_single": "FastChat's MT-Bench single-answer grading prompts, score in [[...]]",
}
#: Where the API key is read from (never from the config, never logged).
API_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class JudgeSpec:
    """One judge of one benchmark."""

    id: str  #: config value, ``{judge}`` wildcard and results folder
    benchmark: str  #: "alpaca_eval" or "mt_bench"
    kind: str  #: "local" or "api"
    protocol: str  #: a key of PROTOCOLS
    model: str | None = None  #: the API model asked (None: the local judge, judges.local_model)
    paper: bool = False  #: the judge the paper's numbers were made with
    shutdown: str | None = None  #: ISO date from which the provider no longer serves `model`
    substitutes: tuple[str, ...] = ()  #: ids of judges to use instead, best first
    #: USD per 1M input and output tokens (for the cost estimate before a run); None = unknown
    price_per_mtok: tuple[float, float] | None = None

    @property
    def is_api(self) -> bool:
        return self.kind == "api"


REGISTRY: tuple[JudgeSpec, ...] = (
    JudgeSpec(LOCAL_JUDGE, "alpaca_eval", "local", "local_probability"),
    JudgeSpec(
        "alpaca_eval_gpt4_turbo_fn",
        "alpaca_eval",
        "api",
        "alpaca_eval_gpt4_turbo_fn",
        model="gpt-4-1106-preview",
        paper=True,
        shutdown="2026-10-23",
        substitutes=("alpaca_eval_fn_gpt-4.1-2025-04-14",),
        price_per_mtok=(10.0, 30.0),
    ),
    JudgeSpec(
        "alpaca_eval_fn_gpt-4.1-2025-04-14",
        "alpaca_eval",
        "api",
        "alpaca_eval_gpt4_turbo_fn",
        model="gpt-4.1-2025-04-14",
        price_per_mtok=(2.0, 8.0),
    ),
    JudgeSpec(LOCAL_JUDGE, "mt_bench", "local", "local_probability"),
    JudgeSpec(
        "gpt-4-0613",
        "mt_bench",
        "api",
        "fastchat_single",
        model="gpt-4-0613",
        paper=True,
        shutdown="2026-10-23",
        substitutes=("gpt-4.1-2025-04-14",),
        price_per_mtok=(30.0, 60.0),
    ),
    JudgeSpec(
        "gpt-4.1-2025-04-14",
        "mt_bench",
        "api",
        "fastchat_single",
        model="gpt-4.1-2025-04-14",
        price_per_mtok=(2.0, 8.0),
    ),
)
BENCHMARKS = ("alpaca_eval", "mt_bench")


@dataclass(frozen=True)
class OpenWeightsJudge:
    """A named open-weights model for the local judge (``judges.local_model``): a real judge,
    pinned by revision, that never retires and costs no API money, unlike the small models the
    local judge otherwise runs on (a pipeline check). Its agreement with the retired paper judge
    is what the calibration stage measures; the evidence for the choice: workflow/docs/judges.md,
    "An open-weights judge"."""

    slug: str  #: the teacher_models key and judges.local_model value
    hf_id: str  #: Hugging Face repository
    revision: str  #: full commit sha of `hf_id` (the teacher_models entry must name the same)
    licence: str

    @property
    def label(self) -> str:
        return f"open judge {self.slug} ({self.hf_id}@{self.revision[:7]})"


#: The open-weights local judges; config/open-judge.yaml selects the first.
OPEN_WEIGHTS_JUDGES: tuple[OpenWeightsJudge, ...] = (
    OpenWeightsJudge(
        "qwen2.5-7b-instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "a09a35458c702b33eeacc393d103063234e8bc28",
        "Apache-2.0",
    ),
)
#: Floating model aliases a config may name by habit, and the pinned judge to use instead.
FLOATING_ALIASES = {"gpt-4": "gpt-4-0613", "gpt-4.1": "gpt-4.1-2025-04-14"}


def judges_of(benchmark: str) -> tuple[str, ...]:
    """The judge ids a benchmark may be scored with, in registry order."""
    return tuple(spec.id for spec in REGISTRY if spec.benchmark == benchmark)


def judge_spec(benchmark: str, judge_id: str) -> JudgeSpec:
    """The record of `judge_id` for `benchmark`; KeyError naming the known ids otherwise."""
    for spec in REGISTRY:
        if spec.benchmark == benchmark and spec.id == judge_id:
            return spec
    raise KeyError(f"no {benchmark} judge {judge_id!r}; known: {list(judges_of(benchmark))}")


def paper_judge(benchmark: str) -> JudgeSpec:
    """The judge the paper's numbers for `benchmark` were made with."""
    return next(s for s in REGISTRY if s.benchmark == benchmark and s.paper)


def api_judges(benchmark: str) -> tuple[str, ...]:
    return tuple(s.id for s in REGISTRY if s.benchmark == benchmark and s.is_api)


def judge_pattern(ids: Iterable[str]) -> str:
    """A regular expression matching exactly these judge ids (the rules' `{judge}` wildcard
    constraint): escaped, since ids hold dots, and longest first."""
    return "|".join(re.escape(i) for i in sorted(set(ids), key=len, reverse=True))


def spec_of(judge_id: str) -> JudgeSpec | None:
    """The API judge record with this id (ids of API judges are unique across benchmarks);
    None for the local judge or an id the registry does not know."""
    return next((s for s in REGISTRY if s.id == judge_id and s.is_api), None)


def open_weights_judge(local_model: str | None) -> OpenWeightsJudge | None:
    """The open-weights judge record whose slug is `local_model`; None for any other model (the
    policy's base model, a small model: the local judge is then a pipeline check)."""
    slug = "" if local_model is None else str(local_model).strip()
    return next((j for j in OPEN_WEIGHTS_JUDGES if j.slug == slug), None)
