"""Snakemake wiring: the run's AlpacaEval judge scored against the retired paper judge's
recorded verdicts (prefopt.judging.calibration): table and figure, stamped with the provenance."""

from prefopt.judging.calibration import pairs_note, write_calibration_outputs
from prefopt.runtime import read_json, setup_logging

log = setup_logging(snakemake.log[0])
inp, out, par = snakemake.input, snakemake.output, snakemake.params
table = write_calibration_outputs(
    read_json(inp.judgments),
    out.table,
    out.markdown,
    out.figure,
    out.figure_pdf,
    judge=par.judge,
    local_judge_model=par.local_judge_model,
    swap=par.swap,
    sources=par.sources,
    pairs_note=pairs_note(read_json(inp.report)),
    provenance=par.provenance_stamp,
)
overall = table[table["source"] == "all"].set_index("statistic")["value"]
log.info("judge %s on %d pairs: agreement %.3f, kappa %.3f, same winner in both orders %.3f",
         par.judge, overall["pairs"], overall["agreement"], overall["cohen_kappa"],
         overall["position_consistency"])  # fmt: skip
