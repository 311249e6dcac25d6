"""Reference log-probs once per (model, dataset, max length); one training job per variant x seed."""


rule cache_reference_logps:
    input:
        model=MODEL_DIR,
        pairs=PAIRS,
    output:
        logps=REFERENCE_LOGPS,
        meta=REFERENCE_META,
    log:
        f"results/logs/cache_reference_logps/{MODEL}-{DATASET}-maxlen{MAX_LENGTH}.log",
    benchmark:
        f"results/benchmarks/cache_reference_logps/{MODEL}-{DATASET}-maxlen{MAX_LENGTH}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "cache_reference_logps"),
    params:
        training=cache_params(config),
    script:
        "../scripts/cache_reference_logps.py"


rule train_policy:
    input:
        model=MODEL_DIR,
        pairs=PAIRS,
        reference_logps=REFERENCE_LOGPS,
        reference_meta=REFERENCE_META,
    output:
        model=directory(CHECKPOINT),
        diagnostics=DIAGNOSTICS,
    log:
        "results/logs/train_policy/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_policy/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(PAIRWISE_VARIANTS),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "train_policy"),
    params:
        training=training_params(config),
        variant=lambda wc: variant_params(config, wc.variant),
    script:
        "../scripts/train_policy.py"
