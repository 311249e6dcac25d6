"""Snakemake wiring: score tables for the notebooks (alpaca_eval metrics via alpaca_eval)."""

from prefopt.data.download import check_sources
from prefopt.judging.win_rates import JUDGE_NOISE_KEYS
from prefopt.reporting.aggregate import (
    alpaca_eval_tables,
    diagnostics_table,
    mt_bench_judge_noise,
    mt_bench_table,
    variants_table,
)
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    boards, per_prompt = alpaca_eval_tables(
        list(inp.alpaca_eval), par.judges["alpaca_eval"], par.lc_assets_dir
    )
    boards.to_csv(out.alpaca_eval, index=False)
    per_prompt.to_csv(out.per_prompt, index=False)
    mt = mt_bench_table(list(inp.mt_bench), par.judges["mt_bench"], inp.questions)
    mt.to_csv(out.mt_bench, index=False)
    # judge noise (judges.repeats > 1; "judged once" otherwise): in the tables, and in the log
    log.info(
        "AlpacaEval judge noise:\n%s",
        boards.reindex(columns=["variant", "seed", *JUDGE_NOISE_KEYS]),
    )
    log.info("MT-Bench judge noise:\n%s", mt_bench_judge_noise(mt) if len(mt) else "no judgments")
    diagnostics_table(list(inp.diagnostics)).to_csv(out.diagnostics, index=False)
    variants_table(par.variants, par.run_variants).to_csv(out.variants, index=False)
    log.info("aggregated %d AlpacaEval runs", len(boards))


if __name__ == "__main__":
    main()
