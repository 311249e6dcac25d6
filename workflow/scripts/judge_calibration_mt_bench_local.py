"""Snakemake wiring: the local judge grades the MT-Bench calibration answers (FastChat prompts,
expected score from its rating-token probabilities)."""

import torch

from prefopt.data.prepare import write_jsonl
from prefopt.judging.calibration_mt_bench import judge_with_local
from prefopt.judging.local import LocalJudge
from prefopt.modeling import load_model
from prefopt.runtime import read_json, read_jsonl, require_gpu, setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
    inp, par = snakemake.input, snakemake.params
    items = read_json(inp.calibration_items)
    judge_prompts = {p["name"]: p for p in read_jsonl(inp.judge_prompts)}
    references = {
        r["question_id"]: r["choices"][0]["turns"] for r in read_jsonl(inp.reference_answers)
    }
    model, tokenizer = load_model(inp.judge_model, cpu_dtype=par.cpu_dtype)
    judge = LocalJudge(model, tokenizer, max_length=par.max_length, model_name=par.judge_model_name)
    records = judge_with_local(judge, items, judge_prompts, references)
    write_jsonl(records, snakemake.output[0])
    log.info("graded %d MT-Bench calibration turns of %d models with the local judge (%s, %s)",
             len(records), len(items["models"]), judge.model_name, model.dtype)  # fmt: skip


if __name__ == "__main__":
    main()
