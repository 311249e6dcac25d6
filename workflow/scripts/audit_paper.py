"""Snakemake wiring: audit Table 1 against the authors' published AlpacaEval artefacts."""

from prefopt.audit import write_audit
from prefopt.runtime import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
table = write_audit(inp.authors_dir, inp.table1, out.table, out.markdown)
log.info(
    "audited %d Table 1 rows; recomputed = leaderboard for %d of %d with annotations",
    len(table),
    int(table["recomputed_matches_leaderboard"].sum()),
    int(table["has_annotations"].sum()),
)
