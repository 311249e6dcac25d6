"""Snakemake wiring: held-out preference pairs, checked and disjoint from the training prompts."""

from prefopt.data.download import check_sources, sha256_file
from prefopt.data.prepare import read_jsonl, rejected_rows_message, write_jsonl
from prefopt.evaluation.heldout import select_heldout_pairs
from prefopt.runtime import setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    inp, out = snakemake.input, snakemake.output
    kept, report = select_heldout_pairs(
        read_jsonl(inp.source),
        read_jsonl(inp.train_pairs),
        snakemake.params.heldout,
        where=f" of {inp.train_pairs}",
    )
    # The source's content, not its path: both routes (download, mirror) give the same report.
    report["source_sha256"] = sha256_file(inp.source)
    write_jsonl(kept, out.pairs)
    write_json(report, out.report)
    log.info("held-out pairs from %s: %s", inp.source, report)
    if rejected := rejected_rows_message(report, inp.source):
        log.warning(rejected)


if __name__ == "__main__":
    main()
