"""Snakemake wiring: audit Table 1 against the authors' published AlpacaEval artefacts."""

from prefopt.data.download import check_sources
from prefopt.reporting.audit import write_audit
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    authors_dir = inp.authors_dir or None
    table = write_audit(
        authors_dir,
        inp.table1,
        out.table,
        out.markdown,
        lc_assets_dir=par.lc_assets_dir,
        missing_reason=par.missing_reason,
        provenance=par.provenance_stamp,
    )
    if authors_dir is None:
        log.warning("Table 1 not audited: %s", par.missing_reason)
    else:
        log.info(
            "audited %d Table 1 rows; recomputed = leaderboard for %d of %d with annotations; "
            "LC recomputed for %d",
            len(table),
            int(table["recomputed_matches_leaderboard"].sum()),
            int(table["has_annotations"].sum()),
            int(table["re_length_controlled_winrate"].notna().sum()),
        )


if __name__ == "__main__":
    main()
