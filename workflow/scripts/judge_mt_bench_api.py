"""Snakemake wiring: MT-Bench single-answer grading by the API judge (FastChat prompts)."""

from prefopt.data import read_jsonl, write_jsonl
from prefopt.judging.api import ApiJudgeClient, judge_mt_bench
from prefopt.runtime import setup_logging

log = setup_logging(snakemake.log[0])  # noqa: F821
client = ApiJudgeClient(model=snakemake.wildcards.judge, cache_path=snakemake.params.cache)  # noqa: F821
records = judge_mt_bench(
    client,
    read_jsonl(snakemake.input.questions),  # noqa: F821
    read_jsonl(snakemake.input.answers),  # noqa: F821
    {p["name"]: p for p in read_jsonl(snakemake.input.judge_prompts)},  # noqa: F821
    {r["question_id"]: r for r in read_jsonl(snakemake.input.reference_answers)},  # noqa: F821
    model_id=f"{snakemake.wildcards.variant}-seed{snakemake.wildcards.seed}",  # noqa: F821
)
write_jsonl(records, snakemake.output[0])  # noqa: F821
log.info("judged %d MT-Bench turns with %s", len(records), snakemake.wildcards.judge)  # noqa: F821
