"""Snakemake wiring: local-judge MT-Bench judgments (FastChat model_judgment format)."""

import torch

from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.judging.local import LocalJudge
from prefopt.modeling import load_model
from prefopt.runtime import require_gpu, setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)  # a GPU rule: on a GPU, or allowed on the CPU (config allow_cpu)
    torch.set_num_threads(snakemake.threads)
    questions = read_jsonl(snakemake.input.questions)
    answers = {
        a["question_id"]: a["choices"][0]["turns"] for a in read_jsonl(snakemake.input.answers)
    }
    judge_prompts = {p["name"]: p for p in read_jsonl(snakemake.input.judge_prompts)}
    references = {
        r["question_id"]: r["choices"][0]["turns"]
        for r in read_jsonl(snakemake.input.reference_answers)
    }
    model, tokenizer = load_model(snakemake.input.judge_model, cpu_dtype=snakemake.params.cpu_dtype)
    judge = LocalJudge(
        model,
        tokenizer,
        max_length=snakemake.params.max_length,
        model_name=snakemake.params.judge_model_name,
    )
    name = f"{snakemake.wildcards.variant}-seed{snakemake.wildcards.seed}"
    records = judge.judge_mt_bench(questions, answers, judge_prompts, references, model_name=name)
    write_jsonl(records, snakemake.output[0])
    log.info(
        "judged %d MT-Bench turns with the local judge (%s, %s)",
        len(records),
        judge.model_name,
        model.dtype,
    )


if __name__ == "__main__":
    main()
