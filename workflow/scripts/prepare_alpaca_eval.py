"""Snakemake wiring: the AlpacaEval 1.0 items (with text-davinci-003 references) this run uses."""

from prefopt.data.download import check_sources
from prefopt.data.prepare import subset_alpaca_eval
from prefopt.runtime import read_json, setup_logging, write_json

log = setup_logging(snakemake.log[0])
log.info("sources checked against their records: %d files", check_sources(snakemake))
items = subset_alpaca_eval(read_json(snakemake.input[0]), snakemake.params.max_prompts)
write_json(items, snakemake.output[0])
log.info("alpaca_eval items: %d", len(items))
