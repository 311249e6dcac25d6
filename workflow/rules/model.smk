"""The base model as a plain Hugging Face folder (the GGUF of the embedded default is dequantised once)."""


rule prepare_model:
    output:
        directory(MODEL_DIR),
    params:
        model=config["model"],
    log:
        f"results/logs/prepare_model/{MODEL}.log",
    threads: config["training"]["threads"]
    conda:
        "../../envs/torch.yaml"
    container:
        config["containers"]["torch"]
    script:
        "../scripts/prepare_model.py"
