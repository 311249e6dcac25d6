"""Snakemake wiring: schema-check preference pairs and keep the configured number."""

from prefopt.data.download import check_sources, sha256_file
from prefopt.data.prepare import check_pairs, read_jsonl, rejected_rows_message, write_jsonl
from prefopt.runtime import setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    rows = read_jsonl(snakemake.input[0])
    kept, report = check_pairs(rows, max_pairs=snakemake.params.max_pairs)
    # The source's content, not its path: both routes (download, mirror) give the same report.
    report["source_sha256"] = sha256_file(snakemake.input[0])
    write_jsonl(kept, snakemake.output.pairs)
    write_json(report, snakemake.output.report)
    log.info("preference pairs from %s: %s", snakemake.input[0], report)
    if rejected := rejected_rows_message(report, snakemake.input[0]):
        log.warning(rejected)


if __name__ == "__main__":
    main()
