"""Snakemake wiring: one Table 1 row's pairs from the authors' annotations.json (both outputs and
the retired judge's verdict), for this run's judge (prefopt.judging.authors_outputs)."""

from pathlib import Path

from prefopt.judging.authors_outputs import authors_pairs
from prefopt.runtime import read_json, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    par = snakemake.params
    rows = read_json(Path(snakemake.input.authors_dir) / par.folder / "annotations.json")
    pairs = authors_pairs(rows, par.folder, par.max_items)
    write_json(pairs, snakemake.output[0])
    log.info("%s: %d of %d rows to judge", par.folder, len(pairs), len(rows))


if __name__ == "__main__":
    main()
