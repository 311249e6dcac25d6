"""Snakemake wiring: AlpacaEval annotations from the pinned API judge (key from the environment)."""

from pathlib import Path

from prefopt.judging.api import ApiJudgeClient, judge_alpaca_eval_pairs
from prefopt.runtime import read_json, setup_logging, write_json

log = setup_logging(snakemake.log[0])  # noqa: F821
config_path = Path(snakemake.input.annotator_config).resolve()  # noqa: F821
client = ApiJudgeClient(
    model="gpt-4-1106-preview",  # pinned in the vendored annotator config
    cache_path=snakemake.params.cache,  # noqa: F821
    base_url=None,
)
annotations = judge_alpaca_eval_pairs(
    client,
    read_json(snakemake.input.outputs),  # noqa: F821
    read_json(snakemake.input.reference),  # noqa: F821
    config_path=config_path,
)
write_json(annotations, snakemake.output[0])  # noqa: F821
log.info("judged %d AlpacaEval pairs with %s", len(annotations), snakemake.wildcards.judge)  # noqa: F821
