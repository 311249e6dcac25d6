"""Snakemake wiring: openbmb/UltraFeedback rows -> listwise rows for lambda-DPO, with counts."""

import json

from prefopt.data.download import check_sources
from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.runtime import setup_logging
from prefopt.training.seed_methods.trainer import prepare_listwise


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    spec = snakemake.params.listwise
    source = read_jsonl(snakemake.input[0])
    rows, stats = prepare_listwise(
        source,
        max_prompts=spec["max_prompts"],
        n_candidates=spec["n_candidates"],
        na_rating=spec["na_rating"],
    )
    # The offline fixture is synthetic and says so per row: carry that into the report.
    synthetic = sum("synthetic" in str(r.get("source", "")).lower() for r in source)
    report = {"source": snakemake.input[0], "synthetic_rows_in_source": synthetic, **stats}
    write_jsonl(rows, snakemake.output.rows)
    with open(snakemake.output.report, "w") as fh:
        json.dump(report, fh, indent=2)
    log.info("listwise data: %s", report)


if __name__ == "__main__":
    main()
