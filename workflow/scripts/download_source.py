"""Snakemake wiring: fetch one pinned source into results/downloads (mirror layout)."""

from pathlib import Path

from prefopt import download
from prefopt.runtime import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
source, spec = snakemake.params.source, snakemake.params.spec  # noqa: F821
out = Path(snakemake.output[0])  # noqa: F821
if source == "ultrafeedback":
    info = download.download_preference_data(spec, out)
    download.write_provenance(info, out.parent)
elif source == "alpaca_eval":
    info = download.download_alpaca_eval(spec, out)
    download.write_provenance(info, out.parent)
elif source == "mt_bench":
    info = download.download_mt_bench(spec, out.parent)
    download.write_provenance(info, out.parent)
elif source == "alpaca_eval_lc":
    info = download.download_lc_assets(spec, out)
    download.write_provenance(info, out)
elif source == "authors_alpaca_eval":
    info = download.download_authors_annotations(spec, out)
    download.write_provenance(info, out)
else:
    raise ValueError(f"unknown source {source!r}")
log.info("downloaded %s: %s", source, info)
