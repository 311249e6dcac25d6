"""Seed-paper branches: lambda-weighted listwise DPO, and DCKD / ADPA / ADPA+ distillation.

Their checkpoints use the same results/train/{variant}/seed{seed}/model layout as the pairwise
losses, so generation, judging, aggregation and every notebook pick them up unchanged.
"""


# Network-bound or light: on a cluster they run on the submit host.
localrules:
    download_listwise_data,
    prepare_listwise_data,


rule download_listwise_data:
    output:
        data=f"{DOWNLOADS}/{LISTWISE['slug']}/{{split}}.jsonl",
        provenance=f"{DOWNLOADS}/{LISTWISE['slug']}/{{split}}.provenance.json",
    log:
        f"results/logs/download_listwise_data/{LISTWISE['slug']}-{{split}}.log",
    benchmark:
        f"results/benchmarks/download_listwise_data/{LISTWISE['slug']}-{{split}}.tsv"
    conda:
        "../../envs/core.yaml"
    container:
        config["containers"]["core"]
    params:
        source="listwise_data",
        repo_id=LISTWISE["id"],
        revision=LISTWISE["revision"],
    script:
        "../scripts/download_source.py"


rule prepare_listwise_data:
    input:
        listwise_source(),
    output:
        rows=LISTWISE_DATA,
        report="results/data/train_listwise.report.json",
    log:
        "results/logs/prepare_listwise_data.log",
    benchmark:
        "results/benchmarks/prepare_listwise_data.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    params:
        listwise=LISTWISE,
    script:
        "../scripts/prepare_listwise_data.py"


rule cache_listwise_reference_logps:
    input:
        model=MODEL_DIR,
        rows=LISTWISE_DATA,
    output:
        LISTWISE_REFERENCE_LOGPS,
    log:
        f"results/logs/cache_listwise_reference_logps/{MODEL}-{LISTWISE['slug']}-maxlen{MAX_LENGTH}.log",
    benchmark:
        f"results/benchmarks/cache_listwise_reference_logps/{MODEL}-{LISTWISE['slug']}-maxlen{MAX_LENGTH}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "cache_listwise_reference_logps"),
    params:
        step="listwise_reference",
        training=cache_params(config),
    script:
        "../scripts/seed_method_cache.py"


rule train_lambda_dpo:
    input:
        model=MODEL_DIR,
        listwise=LISTWISE_DATA,
        reference=LISTWISE_REFERENCE_LOGPS,
    output:
        model=directory(CHECKPOINT),
        diagnostics=DIAGNOSTICS,
    log:
        "results/logs/train_lambda_dpo/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_lambda_dpo/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(variants_with_loss("lambda_dpo")),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "train_lambda_dpo"),
    params:
        training=training_params(config),
        variant=lambda wc: variant_params(config, wc.variant),
    script:
        "../scripts/train_seed_method.py"


rule cache_teacher_topk:
    input:
        teacher=teacher_dir,
        pairs=PAIRS,
    output:
        "results/distill/{variant}/seed{seed}/teacher_topk.pt",
    log:
        "results/logs/cache_teacher_topk/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/cache_teacher_topk/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(variants_with_loss("dckd")),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "cache_teacher_topk"),
    params:
        step="teacher_topk",
        training=cache_params(config),
        variant=lambda wc: variant_params(config, wc.variant, "topk"),
    script:
        "../scripts/seed_method_cache.py"


rule train_dckd_student:
    input:
        model=student_init_dir,
        pairs=PAIRS,
        cache="results/distill/{variant}/seed{seed}/teacher_topk.pt",
    output:
        model=directory(CHECKPOINT),
        diagnostics=DIAGNOSTICS,
    log:
        "results/logs/train_dckd_student/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_dckd_student/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(variants_with_loss("dckd")),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "train_dckd_student"),
    params:
        training=training_params(config),
        variant=lambda wc: variant_params(config, wc.variant),
    script:
        "../scripts/train_seed_method.py"


rule generate_student_responses:
    input:
        student=student_init_dir,
        pairs=PAIRS,
    output:
        "results/distill/{variant}/seed{seed}/student_responses.jsonl",
    log:
        "results/logs/generate_student_responses/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/generate_student_responses/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(variants_with_loss("adpa")),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "generate_student_responses"),
    params:
        step="student_responses",
        training=cache_params(config),
        variant=lambda wc: variant_params(config, wc.variant, "student_generation"),
    script:
        "../scripts/seed_method_cache.py"


rule cache_teacher_advantage:
    input:
        teacher=teacher_dir,
        reference_teacher=reference_teacher_dir,
        responses="results/distill/{variant}/seed{seed}/student_responses.jsonl",
    output:
        "results/distill/{variant}/seed{seed}/teacher_advantage.pt",
    log:
        "results/logs/cache_teacher_advantage/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/cache_teacher_advantage/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(variants_with_loss("adpa")),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "cache_teacher_advantage"),
    params:
        step="teacher_advantage",
        training=cache_params(config),
        variant=lambda wc: variant_params(config, wc.variant, "topk"),
    script:
        "../scripts/seed_method_cache.py"


rule train_adpa_student:
    input:
        model=student_init_dir,
        cache="results/distill/{variant}/seed{seed}/teacher_advantage.pt",
    output:
        model=directory(CHECKPOINT),
        diagnostics=DIAGNOSTICS,
    log:
        "results/logs/train_adpa_student/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_adpa_student/{variant}/seed{seed}.tsv"
    wildcard_constraints:
        variant=variant_regex(variants_with_loss("adpa")),
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    resources:
        **rule_resources(config, "train_adpa_student"),
    params:
        training=training_params(config),
        variant=lambda wc: variant_params(config, wc.variant),
    script:
        "../scripts/train_seed_method.py"
