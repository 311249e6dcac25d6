"""Snakemake wiring: the local judge re-judges the calibration pairs (both orders, always)."""

from prefopt.judging.calibration import local_judge_records
from prefopt.judging.local import judge_of_job
from prefopt.runtime import read_json, start_gpu_job, write_json


def main() -> None:
    log = start_gpu_job(snakemake)
    pairs = read_json(snakemake.input.pairs)
    judge = judge_of_job(snakemake)
    records = local_judge_records(judge.judge_alpaca_eval_pairs(pairs))
    write_json(records, snakemake.output[0])
    log.info("re-judged %d calibration pairs with the local judge (%s, %s)", len(records),
             judge.model_name, judge.model.dtype)  # fmt: skip


if __name__ == "__main__":
    main()
