"""GPU smoke check (`workflow/bin/gpu-smoke`): the tiny DAG on one CUDA device with the paper's
precision path (fp16 autocast, no CPU fallback) and the vLLM engine, then the figures a user
needs before committing a cluster to the paper run: training s/step and peak GPU memory, the
step-0 reference check, generation tokens/s per engine, and the GPU's peak memory in use as
nvidia-smi saw it during the run.

It runs in a copy of the repository (never the user's results/), with the software stacks of
`--sdm` (conda envs or the Apptainer images, with --nv): the vllm stack cannot share .venv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from prefopt_tools.kill_anywhere import copy_repository

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ["tests/config.tiny.yaml", "config/gpu-smoke.yaml"]
GIB = 1024**3


def snakemake_command(sdm: str, dry_run: bool) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", "none", "--cores", "all",
           "--resources", "gpu=1", "--configfile", *CONFIGS]  # fmt: skip
    if dry_run:
        return [*cmd, "-n", "--quiet", "rules"]
    cmd += ["--software-deployment-method", sdm]
    if sdm == "apptainer":
        cmd += ["--apptainer-args=--nv"]  # one token: Snakemake's parser wants the value attached
    return cmd


def _read_tsv_seconds(path: Path) -> float | None:
    if not path.exists():
        return None
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return float(rows[-1]["s"]) if rows else None


def training_lines(results: Path) -> list[str]:
    """One line per training job: device, precision, s/step, peak GPU memory, step-0 check."""
    lines = []
    for summary_file in sorted(results.glob("train/*/seed*/model/prefopt_training.json")):
        s = json.loads(summary_file.read_text())
        job = f"{summary_file.parents[2].name}/{summary_file.parents[1].name}"
        steps = s.get("global_steps") or 0
        per_step = s["train_runtime_s"] / steps if steps and s.get("train_runtime_s") else None
        peak = s.get("peak_gpu_memory_bytes")
        check = s.get("reference_check") or {}
        ok = check.get("max_abs_diff_nats", float("inf")) <= check.get("tolerance_nats", -1)
        lines.append(
            f"train {job}: {s.get('device')} {s.get('precision_resolved')}, {steps} steps, "
            + (f"{per_step:.2f} s/step" if per_step is not None else "s/step n/a")
            + (f", peak {peak / GIB:.2f} GiB (torch)" if peak is not None else "")
            + f"; step-0 reference check {'passed' if ok else 'FAILED'}: "
            f"max |diff| {check.get('max_abs_diff_nats')} nats on {check.get('pairs_checked')} "
            f"pairs (tolerance {check.get('tolerance_nats')})"
        )
    return lines


def generation_lines(results: Path, tokenizer: object | None) -> list[str]:
    """One line per generation job: engine, version, dtype, device, answers, new tokens and
    tokens/s over the job's wall time (model load included: Snakemake's benchmark file)."""
    lines = []
    for record_file in sorted(results.glob("generations/*/*/seed*.engine.json")):
        record = json.loads(record_file.read_text())
        bench, variant = record_file.parents[1].name, record_file.parent.name
        seed = record_file.name.removesuffix(".engine.json")
        answers_file = record_file.with_name(
            seed + (".json" if bench == "alpaca_eval" else ".jsonl")
        )
        if bench == "alpaca_eval":
            texts = [r["output"] for r in json.loads(answers_file.read_text())]
        else:
            rows = [json.loads(x) for x in answers_file.read_text().splitlines() if x.strip()]
            texts = [t for r in rows for t in r["choices"][0]["turns"]]
        tokens = (
            sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)  # type: ignore[operator]
            if tokenizer is not None
            else None
        )
        seconds = _read_tsv_seconds(
            results / "benchmarks" / f"generate_{bench}" / variant / f"{seed}.tsv"
        )
        rate = f"{tokens / seconds:.0f} tokens/s" if tokens and seconds else "tokens/s n/a"
        lines.append(
            f"generate {bench} {variant}/{seed}: {record.get('engine_version')} "
            f"{record.get('dtype')} on {record.get('device')}, {len(texts)} answers, "
            f"{tokens} new tokens in {seconds} s: {rate} (model load included)"
        )
    return lines


def report(workdir: Path, peak_mib: int | None = None) -> str:
    """The smoke check's figures from a finished run in `workdir`."""
    results = workdir / "results"
    tokenizer = None
    model_dirs = sorted((results / "models").glob("*/"))
    if model_dirs:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dirs[0]))
    lines = training_lines(results) + generation_lines(results, tokenizer)
    if peak_mib is not None:
        lines.append(f"GPU memory in use, peak over the run (nvidia-smi): {peak_mib} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sdm",
        choices=["conda", "apptainer"],
        default="conda",
        help="software stacks: conda envs (default) or the Apptainer images (--nv)",
    )
    ap.add_argument("--dry-run", action="store_true", help="plan only (works without a GPU)")
    ap.add_argument("--work", type=Path, help="folder for the copy (default: a temporary one)")
    a = ap.parse_args(argv)  # fmt: skip
    if not a.dry_run and shutil.which("nvidia-smi") is None:
        print("gpu-smoke: no nvidia-smi here, so no CUDA device to check; "
              "`--dry-run` plans the run without one", file=sys.stderr)  # fmt: skip
        return 2
    work = a.work or Path(tempfile.mkdtemp(prefix="prefopt-gpu-smoke-"))
    repo = copy_repository(REPO, work / "repo")
    print(f"gpu-smoke: running in {repo}", flush=True)
    sampler = None
    samples = work / "nvidia-smi.csv"
    if not a.dry_run:
        with samples.open("w") as out:
            sampler = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=out, stderr=subprocess.DEVNULL,
            )  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    try:
        rc = subprocess.run(snakemake_command(a.sdm, a.dry_run), cwd=repo, env=env).returncode
    finally:
        if sampler is not None:
            sampler.terminate()
            sampler.wait()
    if a.dry_run or rc != 0:
        return rc
    used = [int(x) for x in samples.read_text().split() if x.strip().isdigit()]
    print(report(repo, max(used) if used else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
