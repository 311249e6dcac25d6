"""The base model as a plain Hugging Face folder (the GGUF of the embedded default is dequantised once)."""


rule prepare_model:
    output:
        directory(MODEL_DIR),
    log:
        f"results/logs/prepare_model/{MODEL}.log",
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    threads: config["training"]["threads"]
    params:
        model=config["model"],
    script:
        "../scripts/prepare_model.py"
