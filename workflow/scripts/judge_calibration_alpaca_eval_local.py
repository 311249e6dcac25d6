"""Snakemake wiring: the local judge re-judges the calibration pairs (both orders, always)."""

import torch

from prefopt.judging.calibration import local_judge_records
from prefopt.judging.local import LocalJudge
from prefopt.modeling import load_model
from prefopt.runtime import read_json, require_gpu, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
    pairs = read_json(snakemake.input.pairs)
    par = snakemake.params
    model, tokenizer = load_model(snakemake.input.judge_model, cpu_dtype=par.cpu_dtype)
    judge = LocalJudge(model, tokenizer, max_length=par.max_length, model_name=par.judge_model_name)
    records = local_judge_records(judge.judge_alpaca_eval_pairs(pairs))
    write_json(records, snakemake.output[0])
    log.info("re-judged %d calibration pairs with the local judge (%s, %s)", len(records),
             judge.model_name, model.dtype)  # fmt: skip


if __name__ == "__main__":
    main()
