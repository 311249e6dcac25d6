"""Snakemake wiring: the pairs the retired AlpacaEval judge judged that this run's judge is asked
again (prefopt.judging.calibration), from its sources checked against their records."""

from prefopt.data.download import check_sources
from prefopt.judging.calibration import calibration_pairs
from prefopt.runtime import read_json, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    par = snakemake.params
    pairs, report = [], {"max_pairs": par.max_pairs, "sources": {}}
    for source, path in zip(par.sources, snakemake.input.sources, strict=True):
        rows = read_json(path)
        chosen = calibration_pairs(rows, source, par.max_pairs)
        pairs += chosen
        report["sources"][source] = {"rows_in_file": len(rows), "pairs": len(chosen)}
        log.info("%s: %d of %d rows", source, len(chosen), len(rows))
    write_json(pairs, snakemake.output.pairs)
    write_json(report, snakemake.output.report)


if __name__ == "__main__":
    main()
