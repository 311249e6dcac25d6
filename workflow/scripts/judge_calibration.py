"""Snakemake wiring: the run's judges scored against the retired judges' recorded verdicts
(AlpacaEval: prefopt.judging.calibration) and FastChat's published GPT-4 grades (MT-Bench:
prefopt.judging.calibration_mt_bench), whichever the run calibrates: one table and figure,
stamped with the provenance."""

from prefopt.judging.calibration import pairs_note, write_calibration_outputs
from prefopt.judging.calibration_mt_bench import items_note, merged_records
from prefopt.runtime import read_json, read_jsonl, setup_logging


def main() -> None:
    log = setup_logging(snakemake.log[0])
    inp, out, par = snakemake.input, snakemake.output, snakemake.params
    mt_bench = None
    if inp.mt_bench_judgments:
        items = read_json(inp.mt_bench_items[0])
        mt_bench = {
            "judge": par.mt_bench_judge,
            "records": merged_records(items, read_jsonl(inp.mt_bench_judgments[0])),
            "models": par.mt_bench_models,
            "items_note": items_note(read_json(inp.mt_bench_report[0])),
        }
    records = read_json(inp.judgments[0]) if inp.judgments else []
    note = pairs_note(read_json(inp.report[0])) if inp.report else ""
    # the paper authors' pairs, judged by the same judge (rule judge_authors_outputs_*): one source
    # per Table 1 row, after alpaca_eval's files
    authors = [read_json(path) for path in inp.authors_judgments]
    records += [r for rows in authors for r in rows]
    if authors:
        note += (
            " The paper authors' pairs (AlpacaEval 1.0, their annotations.json): "
            + "; ".join(f"{rows[0]['source']}: {len(rows)}" for rows in authors if rows)
            + "."
        )
    table = write_calibration_outputs(
        records,
        out.table,
        out.markdown,
        out.figure,
        out.figure_pdf,
        judge=par.judge,
        local_judge_model=par.local_judge_model,
        swap=par.swap,
        sources=par.sources,
        pairs_note=note,
        provenance=par.provenance_stamp,
        mt_bench=mt_bench,
    )
    for benchmark, part in table[table["source"] == "all"].groupby("benchmark"):
        overall = part.set_index("statistic")["value"]
        if benchmark == "alpaca_eval":
            log.info("judge %s on %d pairs: agreement %.3f, kappa %.3f, same winner in both orders "
                     "%.3f", par.judge, overall["pairs"], overall["agreement"],
                     overall["cohen_kappa"], overall["position_consistency"])  # fmt: skip
        else:
            log.info("judge %s on %d MT-Bench turns: Pearson %.3f, Spearman %.3f, ranking tau %.3f",
                     par.mt_bench_judge, overall["items"], overall["score_pearson"],
                     overall["score_spearman"], overall["ranking_kendall_tau"])  # fmt: skip


if __name__ == "__main__":
    main()
