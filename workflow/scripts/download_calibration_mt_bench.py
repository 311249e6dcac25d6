"""Snakemake wiring: FastChat's GPT-4 MT-Bench judgments and the judged models' answers from its
Hugging Face Space, at the configured revision resolved to a commit, verified and recorded."""

from pathlib import Path

from prefopt.data import download
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    out, par = snakemake.output, snakemake.params
    provenance = Path(out.provenance)
    record = download.download_hf_space_files(
        par.source, par.repo_id, par.revision, dict(par.files), provenance.parent
    )
    download.write_provenance(record, provenance)
    if record.get("warning"):  # a branch, not a commit: pin the commit it resolved to
        log.warning("%s: %s", par.source, record["warning"])
    log.info("downloaded %s at %s (commit %s): %d files", par.source, par.revision,
             record["resolved_commit"], len(record["files"]))  # fmt: skip


if __name__ == "__main__":
    main()
