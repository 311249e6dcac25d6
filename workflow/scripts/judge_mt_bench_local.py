"""Snakemake wiring: local-judge MT-Bench judgments (FastChat model_judgment format)."""

from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.judging.local import judge_of_job
from prefopt.runtime import start_gpu_job


def main() -> None:
    log = start_gpu_job(snakemake)
    questions = read_jsonl(snakemake.input.questions)
    answers = {
        a["question_id"]: a["choices"][0]["turns"] for a in read_jsonl(snakemake.input.answers)
    }
    judge_prompts = {p["name"]: p for p in read_jsonl(snakemake.input.judge_prompts)}
    references = {
        r["question_id"]: r["choices"][0]["turns"]
        for r in read_jsonl(snakemake.input.reference_answers)
    }
    judge = judge_of_job(snakemake)
    name = f"{snakemake.wildcards.variant}-seed{snakemake.wildcards.seed}"
    records = judge.judge_mt_bench(questions, answers, judge_prompts, references, model_name=name)
    write_jsonl(records, snakemake.output[0])
    log.info(
        "judged %d MT-Bench turns with the local judge (%s, %s)",
        len(records),
        judge.model_name,
        judge.model.dtype,
    )


if __name__ == "__main__":
    main()
