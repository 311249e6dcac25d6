"""Held-out preference accuracy and implicit reward margin per variant x seed: a signal that
needs no generation and no judge (prefopt.evaluation.heldout; formats:
workflow/docs/results-layout.md)."""

# Same bootstrap as Table 1's intervals over prompts (artifacts.smk).
HELDOUT_BOOTSTRAP = {"n_bootstrap": 2000, "bootstrap_seed": 20250811}


# Light, CPU-only: on a cluster they run on the submit host.
localrules:
    prepare_heldout_pairs,
    aggregate_heldout,


rule prepare_heldout_pairs:
    input:
        source=heldout_source(),
        train_pairs=PAIRS,
    output:
        pairs=HELDOUT_PAIRS,
        report="results/data/heldout_pairs.report.json",
    log:
        "results/logs/prepare_heldout_pairs.log",
    benchmark:
        "results/benchmarks/prepare_heldout_pairs.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        heldout=HELDOUT,
    script:
        "../scripts/prepare_heldout_pairs.py"


# The reference model's log-probs of the held-out pairs, once: the reference cache's script.
rule cache_heldout_reference_logps:
    input:
        model=MODEL_DIR,
        pairs=HELDOUT_PAIRS,
    output:
        logps=HELDOUT_REFERENCE_LOGPS,
        meta=HELDOUT_REFERENCE_META,
    log:
        f"results/logs/cache_heldout_reference_logps/{MODEL}-{DATASET}-heldout-maxlen{MAX_LENGTH}.log",
    benchmark:
        f"results/benchmarks/cache_heldout_reference_logps/{MODEL}-{DATASET}-heldout-maxlen{MAX_LENGTH}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "cache_heldout_reference_logps"),
    params:
        training=cache_params(config),
    script:
        "../scripts/cache_reference_logps.py"


# The policy's log-probs with the same code path, batches and numerics; `base` is the reference.
rule heldout_preference:
    input:
        model=policy_dir,
        pairs=HELDOUT_PAIRS,
        reference_logps=HELDOUT_REFERENCE_LOGPS,
        reference_meta=HELDOUT_REFERENCE_META,
    output:
        HELDOUT_SCORES,
    log:
        "results/logs/heldout_preference/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/heldout_preference/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(HELDOUT_VARIANTS),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "heldout_preference"),
    params:
        training=cache_params(config),
        policy_is_reference=lambda wc: config["variants"][wc.variant]["loss"] is None,
    script:
        "../scripts/heldout_preference.py"


rule aggregate_heldout:
    input:
        expand(HELDOUT_SCORES, variant=HELDOUT_VARIANTS, seed=RUN_SEEDS),
    output:
        summary=HELDOUT_TABLE,
        per_pair="results/scores/heldout_preference_per_pair.csv",
    log:
        "results/logs/aggregate_heldout.log",
    benchmark:
        "results/benchmarks/aggregate_heldout.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        heldout=HELDOUT["name"],
        n_bootstrap=HELDOUT_BOOTSTRAP["n_bootstrap"],
        bootstrap_seed=HELDOUT_BOOTSTRAP["bootstrap_seed"],
    script:
        "../scripts/aggregate_heldout.py"
