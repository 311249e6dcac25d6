"""Snakemake wiring: per Table 1 row, the authors' outputs under this run's judge next to the
retired judge's verdicts on the same pairs (prefopt.judging.authors_outputs), stamped."""

import csv
from pathlib import Path

from prefopt.judging.authors_outputs import (
    judged_row,
    matching_baseline_outputs,
    not_judged_reason,
    score_table,
    unjudged_row,
)
from prefopt.reporting.artifacts import judge_label
from prefopt.reporting.provenance import stamp_columns
from prefopt.runtime import read_json, setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    inp, par = snakemake.input, snakemake.params
    authors_dir = inp.authors_dir or None
    label = judge_label(par.judge, par.local_judge_model)
    judged = dict(zip(par.judged, inp.judgments, strict=True))
    reference = read_json(inp.reference)
    rows = []
    with open(inp.table1, newline="", encoding="utf-8") as f:
        for paper_row in csv.DictReader(f):
            if paper_row["variant"] not in judged:
                rows.append(unjudged_row(paper_row, not_judged_reason(paper_row, authors_dir)))
                continue
            records = read_json(judged[paper_row["variant"]])
            file_rows = read_json(
                Path(authors_dir) / paper_row["authors_folder"] / "annotations.json"
            )
            row = judged_row(
                paper_row,
                records,
                judge=par.judge,
                judge_label=label.title,
                rows_in_file=len(file_rows),
                lc_assets_dir=par.lc_assets_dir,
                baseline_match=matching_baseline_outputs(file_rows, reference),
            )
            rows.append(row)
            log.info("%s: %d items; win rate %.2f (retired judge on the same items %.2f); "
                     "agreement %.3f on %d decisive pairs", paper_row["variant"], row["items"],
                     row["rejudged_win_rate"], row["reference_win_rate"], row["agreement"],
                     row["agreement_pairs"])  # fmt: skip
    table = score_table(rows)
    (stamp_columns(table, par.provenance_stamp) if par.provenance_stamp else table).to_csv(
        snakemake.output[0], index=False
    )


if __name__ == "__main__":
    main()
