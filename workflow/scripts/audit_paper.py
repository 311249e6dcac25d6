"""Snakemake wiring: audit Table 1 against the authors' published AlpacaEval artefacts."""

from prefopt.audit import write_audit
from prefopt.runtime import setup_logging

log = setup_logging(snakemake.log[0])
inp, out, par = snakemake.input, snakemake.output, snakemake.params
authors_dir = inp.authors_dir or None
table = write_audit(
    authors_dir, inp.table1, out.table, out.markdown, missing_reason=par.missing_reason
)
if authors_dir is None:
    log.warning("Table 1 not audited: %s", par.missing_reason)
else:
    log.info(
        "audited %d Table 1 rows; recomputed = leaderboard for %d of %d with annotations",
        len(table),
        int(table["recomputed_matches_leaderboard"].sum()),
        int(table["has_annotations"].sum()),
    )
