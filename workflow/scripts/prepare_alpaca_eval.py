"""Snakemake wiring: the AlpacaEval 1.0 items this run uses, with the text-davinci-003 reference
outputs as alpaca_eval's AE1 judge saw them (prefopt.data.prepare.alpaca_eval_1_reference)."""

from prefopt.data.download import check_sources
from prefopt.data.prepare import alpaca_eval_1_reference, subset_alpaca_eval
from prefopt.runtime import read_json, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    reference = alpaca_eval_1_reference(read_json(snakemake.input[0]))
    items = subset_alpaca_eval(reference, snakemake.params.max_prompts)
    write_json(items, snakemake.output[0])
    log.info("alpaca_eval items: %d of %d", len(items), len(reference))


if __name__ == "__main__":
    main()
