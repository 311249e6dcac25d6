"""Helpers for tests that run the workflow: a private copy of it, and Snakemake from the venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from prefopt_tools.kill_anywhere import clone_repository, copy_repository

REPO = Path(__file__).resolve().parents[1]
#: The samples the repository ships (the embedded default's mirror), and the test fixtures.
EMBEDDED_DATA = REPO / "workflow" / "resources" / "data"
FIXTURES = REPO / "tests" / "fixtures"


def shipped_alpaca_eval(data_dir: Path = EMBEDDED_DATA) -> list[dict]:
    """The 805 AlpacaEval 1.0 items with their text-davinci-003 reference, as the pipeline reads
    them from the shipped (or a mirrored) source: ``{dataset, instruction, output, generator}``."""
    from prefopt.data.download import ALPACA_EVAL_REFERENCE
    from prefopt.data.prepare import alpaca_eval_1_reference
    from prefopt.runtime import read_json

    return alpaca_eval_1_reference(read_json(data_dir / ALPACA_EVAL_REFERENCE))


def copy_workflow(dest: Path) -> Path:
    """A copy of the repository's tracked (and untracked, non-ignored) files, so tests never
    touch the user's results/ and see exactly what a clone holds."""
    return copy_repository(REPO, dest)


def clone_workflow(dest: Path) -> Path:
    """`copy_workflow` committed as a git repository of its own, as a clone is (its provenance
    names the commit); the same files give the same commit id."""
    return clone_repository(REPO, dest)


def snakemake_env(**extra: str) -> dict[str, str]:
    """The test's environment, offline for the Hub unless ``extra`` says otherwise."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def run_snakemake(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    """``python -m snakemake`` of this venv in ``workdir`` (no workflow profile), captured."""
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "none", *args]
    return subprocess.run(
        cmd,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or snakemake_env(),
    )


def planned_jobs(workdir: Path, *args: str, env: dict[str, str]) -> dict[str, int]:
    """Jobs per rule of ``snakemake -n --quiet rules`` in ``workdir`` (the run must plan)."""
    run = run_snakemake(workdir, "-n", "--quiet", "rules", *args, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M))
    return {rule: int(n) for rule, n in jobs.items() if rule not in ("total", "job")}


def artifacts_workflow(
    tmp_path: Path, config: dict, all_input: str = "ARTIFACT_OUTPUTS"
) -> tuple[Path, Path]:
    """(Snakefile, working folder) for workflow/rules/artifacts.smk on its own: the folder holds
    the score fixtures in results/scores/, the notebooks and the paper's numbers; the Snakefile
    sets `config` and a `rule all` whose input is the Python expression `all_input`."""
    work = tmp_path / "wd"
    (work / "results" / "scores").mkdir(parents=True)
    for f in (FIXTURES / "scores").glob("*.csv"):
        shutil.copy(f, work / "results" / "scores" / f.name)
    (work / "workflow" / "resources").mkdir(parents=True)
    (work / "notebooks").symlink_to(REPO / "notebooks")
    (work / "workflow" / "resources" / "paper").symlink_to(REPO / "workflow/resources/paper")
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        f"config = {config!r}\n"
        f'include: "{REPO / "workflow" / "rules" / "artifacts.smk"}"\n\n'
        f"rule all:\n    input: {all_input}\n"
    )
    return snakefile, work


def tatsu_annotations(model: str, annotator: str):
    """Published alpaca_eval annotations of a leaderboard model, rebuilt from the fixture's
    preferences and output lengths (tests/fixtures/alpaca_eval_annotations/PROVENANCE.md)."""
    import pandas as pd

    df = pd.read_csv(FIXTURES / "alpaca_eval_annotations" / f"{model}__{annotator}.csv")
    return pd.DataFrame(
        {
            "instruction": [f"instruction {i}" for i in range(len(df))],
            "output_1": ["b" * n for n in df["output_1_chars"]],
            "generator_1": "baseline",
            "output_2": ["m" * n for n in df["output_2_chars"]],
            "generator_2": model,
            "annotator": annotator,
            "preference": df["preference"],
        }
    )


#: Pairs for training tests on `tiny_training_job`'s model (fast steps, the real data path).
TINY_PAIRS = [
    {
        "pair_id": f"p{i}",
        "prompt": f"Question {i}: name a colour.",
        "chosen": f"Blue, {i}.",
        "rejected": f"Seven {i} times.",
    }
    for i in range(8)
]


def tiny_training_job(root: Path, tokenizer_dir: Path, training: dict) -> dict[str, Path]:
    """A small random Llama with SmolLM2's tokenizer and chat template, `TINY_PAIRS` and their
    reference cache under `root`: the arguments `train_policy` reads."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prefopt.data.prepare import write_jsonl
    from prefopt.training.trainer import compute_reference_logps

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model_dir = root / "model"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    pairs = root / "pairs.jsonl"
    write_jsonl(TINY_PAIRS, pairs)
    reference = root / "reference.jsonl"
    compute_reference_logps(model_dir, pairs, reference, training)
    return {"model_dir": model_dir, "pairs_path": pairs, "reference_path": reference}


def training_job_args(job: dict, out: Path, training: dict, loss: dict) -> dict:
    """`train_policy`'s keyword arguments for `tiny_training_job`'s files, writing under `out`."""
    return {
        **{k: str(v) for k, v in job.items()},
        "out_dir": str(out / "model"),
        "diagnostics_path": str(out / "diagnostics.csv"),
        "training": training,
        **loss,
    }


#: A valid parameter set per loss, non-default where a parameter changes the loss (label
#: smoothing), for the tests that run every loss (test_losses, test_diagnostics).
LOSS_PARAMS = {
    "dpo": {"beta": 0.1},
    "cdpo": {"beta": 0.1, "label_smoothing": 0.1},
    "dpo_hinge": {"beta": 0.1, "margin": 1.0},
    "ipo": {"beta": 0.1},
    "exo": {"beta": 0.1},
    "aot": {"beta": 0.1},
    "aot_pair": {"beta": 0.1, "label_smoothing": 0.1},
    "apo_zero": {"beta": 0.1},
    "apo_down": {"beta": 0.1},
    "margin_sigmoid": {"beta": 0.1, "delta": 0.3, "label_smoothing": 0.05},
    "apo_hinge_zero": {"beta": 0.1, "margin": 1.0},
    "apo_hinge_softplus": {"beta": 0.3, "margin": 1.0},
    "amapo": {"beta": 2.0},
}
