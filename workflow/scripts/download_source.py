"""Snakemake wiring: fetch one pinned source into results/downloads (mirror layout), verified."""

from pathlib import Path

from prefopt.data import download
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    out, par = snakemake.output, snakemake.params
    if par.source in download.GITHUB_SOURCES:
        # <downloads>/<source>/provenance.json: the files go to their layout paths under <downloads>
        provenance = Path(out.get("provenance") or Path(out[0]) / "provenance.json")
        record = download.download_github(par.source, provenance.parents[1], commit=par.commit)
    elif par.source == "alpaca_eval_lc":
        record = download.download_hf_files(
            par.source, download.LC_ASSETS_REPO, par.revision, download.LC_ASSET_FILES, out[0]
        )
        provenance = Path(out[0]) / "provenance.json"
    else:  # a Hub dataset split: the preference pairs or the listwise data
        split = snakemake.wildcards.split
        record = download.download_hf_split(par.source, par.repo_id, par.revision, split, out.data)
        provenance = out.provenance
    download.write_provenance(record, provenance)
    log.info("downloaded %s: %s", par.source, record)


if __name__ == "__main__":
    main()
