"""Score tables from every judgment and training log, the audit of the paper's own numbers, and
the run's cost: runtime by rule from every job's benchmark file."""


# Light, CPU-only: on a cluster they run on the submit host.
localrules:
    aggregate_scores,
    write_provenance,
    audit_paper,
    runtime_by_rule,


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


# What produced the scores: code commit, config hash, package versions, sha256 of the data and
# model files, judges as served (prefopt.reporting.provenance). Reruns when any score, the config, the
# commit or the checkout's cleanliness changes; every artifact is stamped from it.
rule write_provenance:
    input:
        scores=score_files(),
        data=([PAIRS] if reads_preference_pairs() else [])
        + [ALPACA_EVAL_ITEMS, MT_BENCH_QUESTIONS]
        + ([HELDOUT_PAIRS] if HELDOUT_VARIANTS else []),
        model=MODEL_DIR,
        generation_engines=generation_engine_records(),
    output:
        report(
            PROVENANCE,
            category="6. Provenance and cost",
            labels={"item": f"record: {PROVENANCE}"},
            caption="../report/provenance.rst",
        ),
    log:
        "results/logs/write_provenance.log",
    benchmark:
        "results/benchmarks/write_provenance.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    params:
        code=CODE_STATE,
        config=results_config(config),  # without thread counts: they change no result
        snakemake_version=SNAKEMAKE_VERSION,
    script:
        "../scripts/write_provenance.py"


rule audit_paper:
    input:
        authors_dir=optional_source("authors_alpaca_eval"),
        table1=repo_path("workflow/resources/paper/table1.csv"),
        # recomputes the authors' LC win rates when alpaca_eval's LC assets are at hand
        lc_assets=optional_source("alpaca_eval_lc"),
    output:
        table=AUDIT_TABLE,
        markdown=report(
            "results/tables/audit_paper_numbers.md",
            category="3. Audit of the paper",
            labels={"item": "table: results/tables/audit_paper_numbers.md"},
            caption="../report/audit_paper.rst",
        ),
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
        provenance_stamp=PROVENANCE_STAMP,
        lc_assets_dir=lambda wc, input: input.lc_assets or source_file("alpaca_eval_lc"),
    script:
        "../scripts/audit_paper.py"


# Every other target of the run is an input, so every other job is upstream and this runs last;
# which jobs those are, and so which benchmark files to read, Snakemake's DAG says at the start of
# the run (common.smk's onstart writes the list: prefopt.reporting.run_jobs).
rule runtime_by_rule:
    input:
        targets=lambda wc: run_targets(),
    output:
        # in the report once: the Markdown (the figure draws the same totals)
        table=RUNTIME_OUTPUTS["table"],
        markdown=report(
            RUNTIME_OUTPUTS["markdown"],
            category="6. Provenance and cost",
            labels={"item": f"table: {RUNTIME_OUTPUTS['markdown']}"},
            caption="../report/runtime_by_rule.rst",
        ),
        figure=RUNTIME_OUTPUTS["figure"],
    log:
        "results/logs/runtime_by_rule.log",
    benchmark:
        "results/benchmarks/runtime_by_rule.tsv"
    conda:
        "../../envs/notebooks.yaml"
    container:
        config["containers"]["notebooks"]
    params:
        run_jobs=RUN_JOBS_FILE,
        provenance_stamp=PROVENANCE_STAMP,
    script:
        "../scripts/runtime_by_rule.py"
