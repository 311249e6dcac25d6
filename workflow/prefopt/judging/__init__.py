"""LLM judges for AlpacaEval and MT-Bench.

``prefopt.judging.registry`` lists every judge a run may name (one record each: model, protocol,
whether it is the paper's, when its provider shut it down, its substitutes);
``prefopt.judging.preflight`` checks before a real run that every API judge it will call still
answers; ``prefopt.judging.api`` holds the OpenAI-compatible API judge (cached, retrying,
key-safe) with its AlpacaEval and MT-Bench front-ends; ``prefopt.judging.local`` the
probability-reading local judge; ``prefopt.judging.mt_bench`` FastChat's grading;
``prefopt.judging.win_rates`` alpaca_eval's win rates. Submodules are imported explicitly so that
importing the package (the config validation and the Snakefile do) does not pull in ``openai`` or
``torch``.
"""

from prefopt.judging.registry import (
    BENCHMARKS,
    FLOATING_ALIASES,
    LOCAL_JUDGE,
    judges_of,
    paper_judge,
)

#: The paper's API judges: alpaca_eval's annotator config (vendored in workflow/resources/
#: alpaca_eval/, judge model pinned there) and FastChat's MT-Bench single-answer judge, pinned
#: to the snapshot FastChat's maintainers generated their results with (lm-sys/FastChat issue
#: 2284) instead of FastChat's default `gpt-4`, an alias that may move to another model.
ALPACA_EVAL_API_JUDGE = paper_judge("alpaca_eval").id
MT_BENCH_API_JUDGE = paper_judge("mt_bench").id
#: Judges a benchmark may be scored with (`judges:` in the config; the `{judge}` wildcard).
JUDGES = {benchmark: judges_of(benchmark) for benchmark in BENCHMARKS}

__all__ = [
    "ALPACA_EVAL_API_JUDGE",
    "FLOATING_ALIASES",
    "JUDGES",
    "LOCAL_JUDGE",
    "MT_BENCH_API_JUDGE",
]
