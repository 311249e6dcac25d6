"""The base model as a plain Hugging Face folder (the GGUF of the embedded default is dequantised once)."""


# They download from the Hub (compute nodes often lack internet) and need no GPU: on a cluster
# they run on the submit host.
localrules:
    prepare_model,
    prepare_teacher_model,


rule prepare_model:
    output:
        directory(MODEL_DIR),
    log:
        f"results/logs/prepare_model/{MODEL}.log",
    benchmark:
        f"results/benchmarks/prepare_model/{MODEL}.tsv"
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    params:
        model=config["model"],
    script:
        "../scripts/prepare_model.py"


rule prepare_teacher_model:
    output:
        directory(f"{TEACHER_MODELS_DIR}/{{teacher_model}}"),
    log:
        "results/logs/prepare_teacher_model/{teacher_model}.log",
    benchmark:
        "results/benchmarks/prepare_teacher_model/{teacher_model}.tsv"
    wildcard_constraints:
        teacher_model="|".join(config["teacher_models"]) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    params:
        model=lambda wc: config["teacher_models"][wc.teacher_model],
    script:
        "../scripts/prepare_model.py"
