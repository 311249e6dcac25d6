"""Snakemake wiring: an API judge re-judges the calibration pairs in the retired judge's order
and with the outputs exchanged (key from the environment, every answer cached)."""

from pathlib import Path

from prefopt.judging.api import ApiJudgeClient
from prefopt.judging.calibration import judge_pairs_with_api
from prefopt.judging.registry import judge_spec
from prefopt.runtime import read_json, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    par, judge = snakemake.params, snakemake.wildcards.judge
    spec = judge_spec("alpaca_eval", judge)
    prices = {}
    if spec.price_per_mtok:  # USD per 1M tokens -> per 1k, for the estimate printed first
        prices = dict(zip(("price_per_1k_prompt_tokens", "price_per_1k_completion_tokens"),
                          (p / 1000 for p in spec.price_per_mtok), strict=True))  # fmt: skip
    client = ApiJudgeClient(
        model=spec.model,
        cache_path=par.cache,
        max_workers=snakemake.config["judges"][
            "max_concurrency"
        ],  # how fast, not what: not a param
        **prices,
    )
    records = judge_pairs_with_api(
        client,
        read_json(snakemake.input.pairs),
        Path(snakemake.input.annotator_config).resolve(),
        swap=par.swap,
    )
    write_json(records, snakemake.output[0])
    log.info("re-judged %d calibration pairs with %s (%s, %s); %d with a judge error", len(records),
             judge, client.model, "both orders" if par.swap else "one order",
             sum(r["judge_error"] is not None for r in records))  # fmt: skip


if __name__ == "__main__":
    main()
