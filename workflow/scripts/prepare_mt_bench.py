"""Snakemake wiring: the MT-Bench questions (per category), judge prompts and GPT-4 references."""

import shutil

from prefopt.data.download import check_sources
from prefopt.data.prepare import read_jsonl, subset_mt_bench, write_jsonl
from prefopt.runtime import setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    questions = subset_mt_bench(
        read_jsonl(snakemake.input.questions),
        snakemake.params.per_category,
    )
    write_jsonl(questions, snakemake.output.questions)
    shutil.copyfile(snakemake.input.judge_prompts, snakemake.output.judge_prompts)
    shutil.copyfile(snakemake.input.reference_answers, snakemake.output.reference_answers)
    log.info("mt_bench questions: %d", len(questions))


if __name__ == "__main__":
    main()
