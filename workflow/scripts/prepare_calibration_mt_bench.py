"""Snakemake wiring: the MT-Bench answers GPT-4 graded in FastChat's published judgments that this
run's judge grades again, with GPT-4's score per turn (prefopt.judging.calibration_mt_bench),
from sources checked against their records."""

from prefopt.data.download import check_sources
from prefopt.judging.calibration_mt_bench import calibration_items
from prefopt.runtime import read_jsonl, setup_logging, write_json


def main() -> None:
    log = setup_logging(snakemake.log[0])
    log.info("sources checked against their records: %d files", check_sources(snakemake))
    inp, par = snakemake.input, snakemake.params
    answers = {m: read_jsonl(path) for m, path in zip(par.models, inp.answers, strict=True)}
    items, report = calibration_items(
        read_jsonl(inp.questions), read_jsonl(inp.judgments), answers, par.max_questions
    )
    write_json(items, snakemake.output.calibration_items)
    write_json(report, snakemake.output.report)
    for model, r in report["models"].items():
        log.info("%s: %d turns; GPT-4 score missing %d, unreadable (-1) %d, other prompt %d", model,
                 r["items"], r["reference_missing"], r["reference_failed_parse"],
                 r["reference_other_prompt"])  # fmt: skip


if __name__ == "__main__":
    main()
