"""Snakemake wiring: results/provenance.json from the run's scores, data, model and config."""

import json
from pathlib import Path

from prefopt.reporting.provenance import build_provenance
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    inp, par = snakemake.input, snakemake.params
    record = build_provenance(
        par.config,
        par.code,
        data_files=inp.data,
        model_dirs=[inp.model],
        score_files=inp.scores,
        snakemake_version=par.snakemake_version,
        generation_engine_files=inp.generation_engines,
    )
    Path(snakemake.output[0]).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("provenance: %s", record["stamp"])


if __name__ == "__main__":
    main()
