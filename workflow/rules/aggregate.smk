"""Score tables from every judgment and training log, and the audit of the paper's own numbers."""


# Light, CPU-only: on a cluster they run on the submit host.
localrules:
    aggregate_scores,
    audit_paper,


rule aggregate_scores:
    input:
        alpaca_eval=collect(
            "results/judgments/alpaca_eval/{judge}/{variant}/seed{seed}/annotations.json",
            judge=JUDGE_AE,
        ),
        mt_bench=collect(
            "results/judgments/mt_bench/{judge}/{variant}/seed{seed}.jsonl", judge=JUDGE_MT
        ),
        questions=MT_BENCH_QUESTIONS,
        lc_assets=optional_source("alpaca_eval_lc"),
        diagnostics=expand(
            DIAGNOSTICS,
            variant=TRAINED_VARIANTS,
            seed=RUN_SEEDS,
        ),
    output:
        alpaca_eval="results/scores/alpaca_eval.csv",
        per_prompt="results/scores/alpaca_eval_per_prompt.csv",
        mt_bench="results/scores/mt_bench.csv",
        diagnostics="results/scores/training_diagnostics.csv",
        variants="results/scores/variants.csv",
    log:
        "results/logs/aggregate_scores.log",
    benchmark:
        "results/benchmarks/aggregate_scores.tsv"
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        run_variants=RUN_VARIANTS,
        run_seeds=RUN_SEEDS,
        trained_variants=TRAINED_VARIANTS,
        variants=config["variants"],
        judges={benchmark: config["judges"][benchmark] for benchmark in JUDGES},
        lc_assets_dir=lambda wc, input: input.lc_assets or source_file("alpaca_eval_lc"),
    script:
        "../scripts/aggregate_scores.py"


rule audit_paper:
    input:
        authors_dir=optional_source("authors_alpaca_eval"),
        table1="workflow/resources/paper/table1.csv",
    output:
        table=AUDIT_TABLE,
        markdown="results/tables/audit_paper_numbers.md",
    log:
        "results/logs/audit_paper.log",
    benchmark:
        "results/benchmarks/audit_paper.tsv"
    conda:
        "../../envs/alpaca_eval.yaml"
    container:
        config["containers"]["alpaca_eval"]
    params:
        missing_reason=missing_source_reason(
            "authors_alpaca_eval", "the paper authors' AlpacaEval annotations"
        ),
    script:
        "../scripts/audit_paper.py"
