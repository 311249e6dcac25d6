"""Snakemake wiring: materialise the base model as a Hugging Face folder."""

from prefopt.modeling import prepare_model
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    info = prepare_model(snakemake.params.model, snakemake.output[0])
    log.info("prepared model: %s", info)


if __name__ == "__main__":
    main()
