"""LLM judges for AlpacaEval and MT-Bench.

``prefopt.judging.api`` holds the OpenAI-compatible API judge (cached, retrying, key-safe) with
its AlpacaEval and MT-Bench front-ends; ``prefopt.judging.local`` the probability-reading local
judge. Submodules are imported explicitly so that importing the package (the config validation
and the Snakefile do) does not pull in ``openai`` or ``torch``.
"""

#: The probability-reading judge on the prepared base model (no API key, CPU-friendly).
LOCAL_JUDGE = "local"
#: The paper's API judges: alpaca_eval's annotator config (vendored in workflow/resources/
#: alpaca_eval/) and FastChat's MT-Bench single-answer judge model.
ALPACA_EVAL_API_JUDGE = "alpaca_eval_gpt4_turbo_fn"
MT_BENCH_API_JUDGE = "gpt-4"
#: Judges a benchmark may be scored with (`judges:` in the config; the `{judge}` wildcard).
JUDGES = {
    "alpaca_eval": (LOCAL_JUDGE, ALPACA_EVAL_API_JUDGE),
    "mt_bench": (LOCAL_JUDGE, MT_BENCH_API_JUDGE),
}
