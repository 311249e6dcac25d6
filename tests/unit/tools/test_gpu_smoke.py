"""workflow/bin/gpu-smoke off a GPU: its plan is the tiny DAG with the paper's numerics and the
vLLM stack, it refuses to start without a CUDA device, and its report reads a finished run's
files (training summaries, engine records, answers, Snakemake's benchmark files)."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import snakemake_env

from prefopt_tools import gpu_smoke


def test_without_a_gpu_it_refuses_and_says_how_to_plan(monkeypatch, capsys, tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    assert gpu_smoke.main(["--work", str(tmp_path)]) == 2
    assert "--dry-run" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()  # nothing copied, nothing run


def test_dry_run_plans_the_tiny_dag_with_the_vllm_stack(monkeypatch, tmp_path, capfd):
    for key, value in snakemake_env(PREFOPT_MIRROR="").items():
        monkeypatch.setenv(key, value)
    assert gpu_smoke.main(["--dry-run", "--work", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    for rule in ("train_policy", "generate_alpaca_eval", "generate_mt_bench"):
        assert rule in out, out[-2000:]
    cmd = gpu_smoke.snakemake_command("apptainer", dry_run=False)
    assert "--apptainer-args=--nv" in cmd
    # Snakemake's own parser takes the command as written (a space-separated "--nv" it rejects)
    from snakemake.cli import get_argument_parser

    assert get_argument_parser().parse_args(cmd[3:]).apptainer_args == "--nv"
    assert "config/gpu-smoke.yaml" in cmd


def test_report_reads_a_finished_run(tmp_path, smollm2_dir):
    res = tmp_path / "results"
    model = res / "train" / "dpo" / "seed0" / "model"
    model.mkdir(parents=True)
    (model / "prefopt_training.json").write_text(json.dumps({
        "device": "cuda", "precision_resolved": "fp16", "global_steps": 4,
        "train_runtime_s": 2.0, "peak_gpu_memory_bytes": 3 * 1024**3,
        "reference_check": {"max_abs_diff_nats": 0.01, "tolerance_nats": 0.05,
                            "pairs_checked": 4},
    }))  # fmt: skip
    gen = res / "generations" / "alpaca_eval" / "dpo"
    gen.mkdir(parents=True)
    (gen / "seed0.json").write_text(json.dumps([{"output": "Hello there, friend."}] * 3))
    (gen / "seed0.engine.json").write_text(json.dumps({
        "engine": "vllm", "engine_version": "vllm 0.33.0", "dtype": "float16", "device": "cuda",
    }))  # fmt: skip
    bench = res / "benchmarks" / "generate_alpaca_eval" / "dpo"
    bench.mkdir(parents=True)
    (bench / "seed0.tsv").write_text("s\th:m:s\tmax_rss\n1.5\t0:00:01\t100\n")
    shutil.copytree(smollm2_dir, res / "models" / "smollm2-135m-instruct")
    text = gpu_smoke.report(tmp_path, peak_mib=4321)
    assert "train dpo/seed0: cuda fp16, 4 steps, 0.50 s/step, peak 3.00 GiB" in text
    assert "step-0 reference check passed" in text
    line = next(x for x in text.splitlines() if x.startswith("generate alpaca_eval dpo/seed0"))
    assert "vllm 0.33.0 float16 on cuda, 3 answers" in line
    tokens = int(line.split(" new tokens")[0].rsplit(" ", 1)[1])
    assert tokens > 3 and f"{tokens / 1.5:.0f} tokens/s" in line
    assert "peak over the run (nvidia-smi): 4321 MiB" in text
