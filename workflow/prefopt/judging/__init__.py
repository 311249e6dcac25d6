"""LLM judges for AlpacaEval and MT-Bench.

``prefopt.judging.api`` holds the OpenAI-compatible API judge (cached, retrying, key-safe) with
its AlpacaEval and MT-Bench front-ends; ``prefopt.judging.local`` the probability-reading local
judge. Submodules are imported explicitly so that importing the package (the config validation
and the Snakefile do) does not pull in ``openai`` or ``torch``.
"""

#: The probability-reading judge on a local model (no API key, CPU-friendly): the policy's base
#: model, or the model `judges.local_model` names.
LOCAL_JUDGE = "local"
#: The paper's API judges: alpaca_eval's annotator config (vendored in workflow/resources/
#: alpaca_eval/, judge model pinned there) and FastChat's MT-Bench single-answer judge, pinned
#: to the snapshot FastChat's maintainers generated their results with (lm-sys/FastChat issue
#: 2284) instead of FastChat's default `gpt-4`, an alias that may move to another model.
ALPACA_EVAL_API_JUDGE = "alpaca_eval_gpt4_turbo_fn"
MT_BENCH_API_JUDGE = "gpt-4-0613"
#: Judges a benchmark may be scored with (`judges:` in the config; the `{judge}` wildcard).
JUDGES = {
    "alpaca_eval": (LOCAL_JUDGE, ALPACA_EVAL_API_JUDGE),
    "mt_bench": (LOCAL_JUDGE, MT_BENCH_API_JUDGE),
}
#: Floating model aliases a config may name by habit, and the pinned judge to use instead.
FLOATING_ALIASES = {"gpt-4": MT_BENCH_API_JUDGE}
