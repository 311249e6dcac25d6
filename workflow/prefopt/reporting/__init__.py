"""Reporting: score aggregation, the tables and figures of every artifact, the audit of the
paper's numbers, provenance stamps, per-rule cost (`rule_cost`, from Snakemake's benchmark files)
and stable ids in executed notebooks."""
