"""TRL training with our loss functions, reading reference log-probs from a shared cache.

`PrefOptDPOTrainer` keeps TRL's data pipeline, collator, optimiser and checkpointing and only
replaces the loss: policy log-probs come from `sequence_logps` (TRL's fused LM head on a GPU, a
completion-tokens-only head on a CPU), reference log-probs come
from the batch (precomputed once per model/dataset/max length by `cache_reference_logps`), and
the per-pair loss is `prefopt.training.losses.pairwise_loss`. No training job runs the reference
model.
"""

from __future__ import annotations

import json
import logging
import os
import random
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from trl import DPOConfig, DPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from prefopt.config import checkpoints_asked
from prefopt.data.prepare import read_jsonl, to_conversational, truncate_prompt
from prefopt.modeling import check_context, check_model_dir, model_context, resolve_precision
from prefopt.runtime import Progress
from prefopt.training.ddp import barrier, init_process_group, is_main_process, per_device_batch
from prefopt.training.diagnostics import DiagnosticsAccumulator, DiagnosticsWriter
from prefopt.training.losses import pairwise_loss
from prefopt.training.reference_cache import (
    ReferenceCacheError,
    cache_record,
    read_reference_cache,
    require_pairs,
    write_reference_cache,
)
from prefopt.training.resume import Checkpoints, checkpoint_step, job_fingerprint

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Same config and seed give the same results on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def build_pair_dataset(pairs_path: str | Path, tokenizer: Any, max_prompt_length: int):
    """Conversational TRL dataset of the prepared pairs, prompts truncated to the paper's 256."""
    from datasets import Dataset

    rows = [truncate_prompt(r, tokenizer, max_prompt_length) for r in read_jsonl(pairs_path)]
    return Dataset.from_list([to_conversational(r) for r in rows])


def trainer_arguments(
    output_dir: str | Path,
    training: dict[str, Any],
    seed: int,
    learning_rate: float | None = None,
    on_gpu: bool = False,
) -> dict[str, Any]:
    """`TrainingArguments` fields shared by the pairwise (TRL) and seed-method trainers."""
    precision = resolve_precision(training["precision"], on_gpu)
    if precision == "fp16" and not on_gpu:
        raise ValueError("training.precision fp16 needs a CUDA GPU; use auto or fp32 on CPU")
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": training["epochs"],
        # the configured batch split over the processes of a DDP job (prefopt.training.ddp)
        "per_device_train_batch_size": per_device_batch(training),
        "gradient_accumulation_steps": training["gradient_accumulation_steps"],
        "learning_rate": learning_rate or training["learning_rate"],
        "lr_scheduler_type": training["lr_scheduler_type"],
        # a float < 1 is a ratio in transformers 5
        "warmup_steps": float(training["warmup_ratio"]),
        "gradient_checkpointing": training["gradient_checkpointing"],
        "logging_steps": training["logging_steps"],
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not on_gpu,
        "seed": seed,
        "data_seed": seed,
        # checkpoints for resume (prefopt.training.resume); that module completes and rotates them
        **(
            {"save_strategy": "steps", "save_steps": training["checkpoint_steps"]}
            if training.get("checkpoint_steps")
            else {"save_strategy": "no"}
        ),
        "report_to": [],
        "disable_tqdm": True,
    }


def _dpo_config(
    output_dir: str | Path,
    training: dict[str, Any],
    seed: int,
    learning_rate: float | None = None,
    on_gpu: bool = False,
) -> DPOConfig:
    return DPOConfig(
        **trainer_arguments(output_dir, training, seed, learning_rate, on_gpu),
        max_length=training["max_length"],
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=training["reference_batch_size"],
        dataset_num_proc=None,
    )


_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
#: config keys with which a model transforms the LM head's output (TRL's fused head applies them)
_LOGIT_TRANSFORM_KEYS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def sequence_logps(
    model: Any, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs and completion lengths of a TRL DPO batch ([chosen; rejected]).

    On a GPU this is TRL's fused LM head (`fused_lm_head=True`, a Triton kernel that scores only
    completion tokens). On a CPU that kernel projects every position, prompt and padding
    included, tile by tile; here the backbone's hidden states of the completion tokens alone go
    through the LM head in one matmul and a fused cross-entropy, the same log-probs for less
    work. Both the reference cache and training call this, so their numerics are the same.
    A DDP-wrapped model (`prefopt.training.ddp`) takes the fused head on the CPU too: DDP
    synchronises gradients only for a forward through its own wrapper, which the backbone call would
    skip.
    """
    completion_mask = inputs["completion_mask"]
    mask = completion_mask[:, 1:].bool()
    model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
    model_kwargs["use_cache"] = False
    lengths = mask.sum(dim=1)
    wrapped = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    if inputs["input_ids"].device.type != "cpu" or wrapped or not _plain_lm_head(model):
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        per_token = model(**model_kwargs, labels=labels, fused_lm_head=True).log_probs
        return per_token[:, -mask.size(1) :].sum(dim=1), lengths
    hidden = model.base_model(**model_kwargs).last_hidden_state[:, :-1]
    logits = model.get_output_embeddings()(hidden[mask])
    targets = inputs["input_ids"][:, 1:][mask]
    token_logps = -torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    per_token = token_logps.new_zeros(mask.shape).masked_scatter(mask, token_logps)
    return per_token.sum(dim=1), lengths


def _plain_lm_head(model: Any) -> bool:
    """True when the logits are the LM head's output as is (no softcapping, scaling or bias)."""
    cfg = model.config.get_text_config()
    scaled = any(getattr(cfg, k, None) is not None for k in _LOGIT_TRANSFORM_KEYS)
    head = model.get_output_embeddings()
    return not scaled and head is not None and getattr(head, "bias", None) is None


class PrefOptDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is `prefopt.training.losses.pairwise_loss(loss_name, ...)`.

    With `diagnostics_path`, a `prefopt.training.diagnostics.DiagnosticsWriter` writes the per-step
    diagnostics of the training batches there (a row per logging step and one at the end).
    """

    def __init__(
        self,
        *args: Any,
        loss_name: str,
        loss_params: dict[str, Any],
        diagnostics_path: str | Path | None = None,
        require_cached_reference: bool = True,
        **kwargs: Any,
    ) -> None:
        self.loss_name = loss_name
        self.loss_params = dict(loss_params)
        self.require_cached_reference = require_cached_reference
        self.diagnostics = DiagnosticsAccumulator(loss_name, self.loss_params)
        super().__init__(*args, **kwargs)
        if diagnostics_path:
            self.add_callback(DiagnosticsWriter(diagnostics_path, self.diagnostics))

    def _precompute_ref_logps(self, dataset, name, batch_size):  # noqa: ANN001
        """Reference log-probs come from our cache file, never from a model in this job."""
        missing = {"ref_chosen_logps", "ref_rejected_logps"} - set(dataset.column_names)
        if missing and self.require_cached_reference:
            raise ValueError(
                f"{name} dataset lacks {sorted(missing)}: training reads reference log-probs "
                "from the cache written by the cache_reference_logps rule"
            )
        return dataset

    def compute_ref_log_probs(self, model, inputs):  # noqa: ANN001
        """Reference log-probs with exactly the forward that training uses for the policy."""
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(model, self.args.gradient_checkpointing_kwargs),
            self.accelerator.autocast(),
        ):
            logps, _ = sequence_logps(model, inputs)
        return logps.chunk(2, dim=0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        # accelerate puts autocast around model.forward only; the CPU path calls the backbone
        # and the head directly, so it enters the same autocast here (as the reference pass does)
        with self.accelerator.autocast():
            logps, lengths = sequence_logps(model, inputs)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        chosen_len, rejected_len = lengths.chunk(2, dim=0)
        ref_chosen = inputs["ref_chosen_logps"].to(chosen_logps.device, chosen_logps.dtype)
        ref_rejected = inputs["ref_rejected_logps"].to(chosen_logps.device, chosen_logps.dtype)
        losses = pairwise_loss(
            self.loss_name,
            chosen_logps,
            rejected_logps,
            ref_chosen,
            ref_rejected,
            chosen_lengths=chosen_len,
            rejected_lengths=rejected_len,
            **self.loss_params,
        )
        loss = losses.mean()
        if model.training:
            self.diagnostics.update(
                chosen_logps, rejected_logps, ref_chosen, ref_rejected, chosen_len, rejected_len
            )
        beta = float(self.loss_params.get("beta", 1.0))
        with torch.no_grad():
            rewards_c = beta * (chosen_logps - ref_chosen)
            rewards_r = beta * (rejected_logps - ref_rejected)
        mode = "train" if model.training else "eval"
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(rewards_c.mean().item())
        metrics["rewards/rejected"].append(rewards_r.mean().item())
        metrics["rewards/margins"].append((rewards_c - rewards_r).mean().item())
        metrics["rewards/accuracies"].append((rewards_c > rewards_r).float().mean().item())
        return (loss, None) if return_outputs else loss


#: Largest |cached - recomputed| reference log-prob (nats, per sequence) the step-0 check accepts,
#: by resolved precision: fp32 is exact up to summation order; bf16/fp16 autocast moves a
#: sequence by up to ~0.6 nats between batches of other shapes (tests/unit/test_training_numerics).
REFERENCE_CHECK_TOLERANCE_NATS = {"fp32": 1e-3, "bf16": 1.0, "fp16": 1.0}


def check_reference_at_step_zero(
    trainer: Any, reference_path: str | Path, precision: str
) -> dict[str, Any]:
    """Before the first optimiser step the policy *is* the reference: recompute its log-probs on
    the first training pairs (one batch, the trainer's own forward and autocast) and compare
    them with the cache. Beyond `REFERENCE_CHECK_TOLERANCE_NATS` the cache was made with other
    numerics (weights dtype, autocast, kernels, truncation, tokenizer) and every loss would see
    a spurious per-pair offset: stop, naming the pair and both values."""
    from torch.utils.data import DataLoader

    on_gpu = trainer.accelerator.device.type == "cuda"
    precision = resolve_precision(precision, on_gpu)
    tolerance = REFERENCE_CHECK_TOLERANCE_NATS[precision]
    n = min(trainer.args.per_device_train_batch_size, len(trainer.train_dataset))
    first = trainer.train_dataset.select(range(n))
    loader = DataLoader(
        first.remove_columns(["pair_id"]), batch_size=n, collate_fn=trainer.data_collator
    )
    batch = next(iter(loader))
    device = trainer.accelerator.device
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = trainer.model.training
    trainer.model.eval()
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    trainer.model.train(was_training)
    worst = {"diff": 0.0}
    for i, pid in enumerate(first["pair_id"]):
        for side, own in (("chosen", chosen), ("rejected", rejected)):
            cached, mine = float(first[f"ref_{side}_logps"][i]), float(own[i])
            diff = abs(cached - mine)
            if diff > worst["diff"]:
                worst = {"diff": diff, "pair_id": pid, "side": side}
            if not diff <= tolerance:  # NaN (a non-finite log-prob) fails too: NaN > x is False
                raise ReferenceCacheError(
                    f"step-0 reference check failed for pair {pid!r} ({side}): the cache "
                    f"{reference_path} has {cached:.4f}, the policy's own log-prob before any "
                    f"step is {mine:.4f} (|difference| {diff:.4g} nats > {tolerance:g} allowed "
                    f"at {precision}). The cache was computed with other numerics (weights "
                    "dtype, autocast, truncation or tokenizer) than training: delete it and "
                    "rerun cache_reference_logps with this config"
                )
    return {
        "pairs_checked": n,
        "max_abs_diff_nats": worst["diff"],
        "tolerance_nats": tolerance,
        "precision": precision,
    }


def compute_reference_logps(
    model_dir: str | Path,
    pairs_path: str | Path,
    out_path: str | Path,
    training: dict[str, Any],
) -> dict[str, Any]:
    """Run the frozen reference model once over every pair and write its sequence log-probs.

    `pair_logps` scores the pairs with the trainer's `compute_ref_log_probs`, which is the
    policy's forward (`sequence_logps` under the training autocast), so the cached values are
    the policy's own at step 0.
    """
    scored = pair_logps(model_dir, pairs_path, training, Path(out_path).parent / "_trainer")
    rows = [
        {"pair_id": pid, "ref_chosen_logps": c, "ref_rejected_logps": r}
        for pid, c, r in zip(scored["pair_id"], scored["chosen"], scored["rejected"], strict=True)
    ]
    record = cache_record(model_dir, pairs_path, training, torch.cuda.is_available())
    write_reference_cache(rows, out_path, record)
    return {"n_pairs": len(rows), "n_dropped_by_trl": scored["n_dropped_by_trl"]}


def pair_logps(
    model_dir: str | Path,
    pairs_path: str | Path,
    training: dict[str, Any],
    work_dir: str | Path,
) -> dict[str, Any]:
    """Summed chosen and rejected log-probs of every pair under the model in `model_dir`, with
    exactly the numerics of training and of the reference cache.

    TRL's own tokenisation and collator, batches of `reference_batch_size` in file order (so two
    models scored here see the same batch shapes), the model loaded as training loads it and the
    trainer's `compute_ref_log_probs` (`sequence_logps` under the training autocast). Used by
    the reference cache and by the held-out preference scores of a trained policy
    (`prefopt.evaluation.heldout`). Returns ``pair_id``, ``chosen``, ``rejected`` (lists, pair
    order) and ``n_dropped_by_trl``.
    """
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer

    on_gpu = torch.cuda.is_available()
    check_model_dir(model_dir)
    check_training_context(model_dir, training)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = build_pair_dataset(pairs_path, tokenizer, training["max_prompt_length"])
    model = load_policy_model(model_dir, on_gpu)  # after the pairs are read: a bad row stops first
    # The pass takes no optimiser step: its rules pass only the settings that shape the
    # log-probs (prefopt.config.CACHE_TRAINING_KEYS); these complete the DPOConfig it needs.
    no_training = {
        "epochs": 1,
        "per_device_train_batch_size": training["reference_batch_size"],
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-6,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "gradient_checkpointing": False,
        "logging_steps": 1,
    }
    training = {**no_training, **training}
    cfg = _dpo_config(work_dir, training, seed=0, on_gpu=on_gpu)
    trainer = PrefOptDPOTrainer(
        model=model,
        args=cfg,
        train_dataset=dataset,
        processing_class=tokenizer,
        loss_name="dpo",
        loss_params={"beta": 0.1},
        require_cached_reference=False,
    )
    prepared = trainer.train_dataset
    loader = DataLoader(
        prepared.remove_columns(["pair_id"]),
        batch_size=training["reference_batch_size"],
        collate_fn=trainer.data_collator,
        shuffle=False,
    )
    device = trainer.accelerator.device
    chosen, rejected = [], []
    trainer.model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        c, r = trainer.compute_ref_log_probs(trainer.model, batch)
        chosen.extend(c.float().cpu().tolist())
        rejected.extend(r.float().cpu().tolist())
    return {
        "pair_id": list(prepared["pair_id"]),
        "chosen": chosen,
        "rejected": rejected,
        "n_dropped_by_trl": len(dataset) - len(prepared),
    }


def check_training_context(model_dir: str | Path, training: dict[str, Any]) -> None:
    """`training.max_length` (prompt + answer) fits the model's context, checked before the
    model loads."""
    check_context(
        model_context(model_dir),
        training["max_length"],
        key="training.max_length",
        what="a pair's prompt + answer",
    )


def load_for_training(model_dir: str | Path, training: dict[str, Any], seed: int):
    """Seed everything, set the thread count, load the tokenizer and the fp32 model to train.

    Returns (model, tokenizer, on_gpu); shared by the pairwise and seed-method trainers.
    """
    from transformers import AutoTokenizer

    seed_everything(seed)
    torch.set_num_threads(int(training.get("threads", torch.get_num_threads())))
    check_model_dir(model_dir)
    check_training_context(model_dir, training)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    on_gpu = torch.cuda.is_available()
    check_one_gpu()
    return load_policy_model(model_dir, on_gpu), tokenizer, on_gpu


def check_one_gpu() -> None:
    """Never DataParallel: a single-process job that sees several GPUs would have transformers
    wrap the model in DataParallel and train with the per-device batch times the GPU count
    (not the paper's 8). Jobs get one GPU each (`prefopt.runtime.claim_gpus`)."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        raise RuntimeError(
            f"this training job sees {n} GPUs (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); transformers would wrap the "
            f"model in DataParallel and train with {n}x the configured batch. Give the job one "
            "GPU (rules declare resources gpu=1; prefopt.runtime.claim_gpus sets "
            "CUDA_VISIBLE_DEVICES, SLURM's --gpus=1 does the same)"
        )


#: Attention kernel on the CPU: eager (bf16 matmuls) trains 10-16 % faster per step than SDPA's
#: CPU flash kernel, whose backward dominates at these lengths (measured at max length 128 and
#: 256, SmolLM2-135M, 1 thread). GPUs keep the transformers default (SDPA).
CPU_ATTENTION = "eager"


def load_policy_model(model_dir: str | Path, on_gpu: bool) -> Any:
    """The model as training runs it: fp32 weights (the precision's autocast does the mixed
    precision) and the device's attention kernel. The reference cache loads it the same way,
    so the cached log-probs are the policy's own at step 0."""
    from transformers import AutoModelForCausalLM

    check_model_dir(model_dir)
    kwargs = {} if on_gpu else {"attn_implementation": CPU_ATTENTION}
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kwargs)


class TrainingProgress(TrainerCallback):
    """Steps done of the total, s/step, ETA, the last logged loss and the peak memory, in the
    job's log at the start, at least every minute and at the end (`prefopt.runtime.Progress`);
    rank 0 only in a DDP job."""

    def __init__(self, what: str, every_s: float = 60.0, clock: Any = time.monotonic) -> None:
        self.what, self.every_s, self.clock = what, every_s, clock
        self.progress: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if is_main_process():
            self.progress = Progress(
                self.what, state.max_steps, "steps", first=state.global_step,
                every_s=self.every_s, clock=self.clock,
            )  # fmt: skip

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.progress is not None:
            self.progress.update(state.global_step, self._figures(state))

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.progress is not None and self.progress.done < state.max_steps:
            self.progress.update(state.global_step, self._figures(state), force=True)

    @staticmethod
    def _figures(state: Any) -> str:
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        loss = f"loss {losses[-1]:.4f}, " if losses else ""
        if torch.cuda.is_available():
            memory = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        else:  # the process's peak resident memory (Linux: KiB)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            memory = f"peak RSS {peak:.1f} GiB"
        return loss + memory


def train_and_save(
    trainer: Any,
    tokenizer: Any,
    out_dir: str | Path,
    training: dict[str, Any],
    checkpoints: Checkpoints | None = None,
    **head: Any,
) -> dict[str, Any]:
    """Train (from `checkpoints.latest` when there is one); save the model, tokenizer and
    ``prefopt_training.json`` (``head`` + the run's steps, loss, runtime, log history, device
    and precision) to `out_dir`; delete the checkpoints; return the summary."""
    resumed = checkpoints.latest if checkpoints else None
    if resumed is not None:
        log.info("resuming from %s (step %d)", resumed.name, checkpoint_step(resumed))
    what = " ".join(f"{k} {v}" for k, v in head.items() if k in ("loss", "seed"))
    trainer.add_callback(TrainingProgress(f"training {what}".strip()))
    result = trainer.train(resume_from_checkpoint=str(resumed) if resumed else None)
    out_dir = Path(out_dir)
    steps = trainer.state.global_step
    summary = {
        **head,
        "global_steps": steps,
        "train_loss": checkpoints.train_loss(result.training_loss, steps)
        if checkpoints
        else result.training_loss,
        "resumed_from_step": checkpoint_step(resumed) if resumed else None,
        # per device x processes x accumulation: the batch each optimiser step saw
        "global_batch_size": trainer.args.per_device_train_batch_size
        * max(1, trainer.args.world_size)
        * trainer.args.gradient_accumulation_steps,
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "processes": max(1, trainer.args.world_size),
        "train_runtime_s": result.metrics.get("train_runtime"),
        # torch's own count on the GPU (None on a CPU), for workflow/bin/gpu-smoke
        "peak_gpu_memory_bytes": torch.cuda.max_memory_allocated()
        if torch.cuda.is_available()
        else None,
        "log_history": trainer.state.log_history,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": training["precision"],
        "precision_resolved": resolve_precision(training["precision"], torch.cuda.is_available()),
    }
    if is_main_process():  # one writer in a DDP job (prefopt.training.ddp)
        trainer.model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        (out_dir / "prefopt_training.json").write_text(json.dumps(summary, indent=2))
        if checkpoints:
            checkpoints.clear()
        else:  # the trainer makes its output folder even when it saves nothing: leave none
            work = Path(trainer.args.output_dir)
            if work.is_dir() and not any(p.is_file() for p in work.rglob("*")):
                shutil.rmtree(work)
    barrier()
    return summary


def job_checkpoints(
    work_dir: str | Path,
    training: dict[str, Any],
    inputs: list[str | Path],
    diagnostics_path: str | Path,
    **settings: Any,
) -> Checkpoints | None:
    """The job's checkpoint folder when `training.checkpoint_steps` or
    `training.checkpoint_minutes` asks for checkpoints, else None (and any folder a run with
    checkpoints left there is deleted)."""
    if not checkpoints_asked(training):
        if is_main_process():
            shutil.rmtree(work_dir, ignore_errors=True)
        return None
    fingerprint = job_fingerprint(inputs, training, **settings)
    return Checkpoints(
        work_dir, fingerprint, diagnostics_path, training.get("checkpoint_minutes") or 0
    )


def job_training(snakemake: Any, *, ddp: bool = False) -> dict[str, Any]:
    """A training rule's `training` params plus how its job runs: the job's threads and the
    checkpoint settings (and with `ddp`, train_policy's GPUs per job). These are read from the
    config here, not passed as params, so that changing one reruns nothing."""
    keys = ("checkpoint_steps", "checkpoint_minutes") + (("gpus_per_job",) if ddp else ())
    return {
        **snakemake.params.training,
        "threads": snakemake.threads,
        **{key: snakemake.config["training"][key] for key in keys},
    }


def run_training_job(
    build: Callable[[Path], tuple[Any, Any]],
    *,
    inputs: list[str | Path],
    out_dir: str | Path,
    diagnostics_path: str | Path,
    training: dict[str, Any],
    loss: str,
    params: dict[str, Any],
    seed: int,
    learning_rate: float | None = None,
    carry: Callable[[Any, Checkpoints | None], dict[str, Any]] | None = None,
    record: Callable[[Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The skeleton of every training job, the pairwise (`train_policy`) and the seed-method
    (`prefopt.training.seed_methods.trainer.train_seed_method`) ones; what differs is passed in.

    1. The job's checkpoint folder, ``checkpoints/`` beside `out_dir` (`job_checkpoints`: kept
       when its fingerprint, `inputs` + `training` + loss, params, seed, learning rate, is this
       job's; rank 0 first in a DDP job, `prefopt.training.ddp`).
    2. ``build(work_dir)`` -> (trainer, tokenizer): check and load the inputs and the model
       (`load_for_training` seeds, sets threads and device) and make the trainer, writing its
       diagnostics to `diagnostics_path` and its checkpoints to `work_dir`.
    3. ``carry(trainer, checkpoints)``: records a checkpoint carries to the resumed run (the
       pairwise step-0 reference check); they also go into the summary.
    4. Train, resuming from the latest checkpoint; save the model and
       ``prefopt_training.json``: loss, params, seed, the carried records and
       ``record(trainer)``, then the run's figures (`train_and_save`). `record` is read before
       training: what the trainer fills in place while training (the seed methods' lambda
       history) is written as it is at the end.
    """
    work_dir = Path(out_dir).parent / "checkpoints"
    # A DDP job (prefopt.training.ddp): rank 0 sets up the checkpoint folder first.
    init_process_group()
    for turn in ("main", "others"):
        if (turn == "main") == is_main_process():
            checkpoints = job_checkpoints(
                work_dir,
                training,
                inputs,
                diagnostics_path,
                loss=loss,
                params=params,
                seed=seed,
                learning_rate=learning_rate,
            )
        barrier()
    trainer, tokenizer = build(work_dir)
    carried = carry(trainer, checkpoints) if carry else {}
    if checkpoints:
        checkpoints.attach(trainer, carried)
    return train_and_save(
        trainer,
        tokenizer,
        out_dir,
        training,
        checkpoints,
        loss=loss,
        params=params,
        seed=seed,
        **carried,
        **(record(trainer) if record else {}),
    )


def build_policy_trainer(
    model_dir: str | Path,
    pairs_path: str | Path,
    reference_path: str | Path,
    work_dir: str | Path,
    training: dict[str, Any],
    loss_name: str,
    loss_params: dict[str, Any],
    seed: int,
    learning_rate: float | None = None,
    diagnostics_path: str | Path | None = None,
) -> tuple[PrefOptDPOTrainer, Any]:
    """The trainer of one variant and seed, reading the cached reference log-probs.

    Shared by `train_policy` and the training benchmark, so the benchmark times this code path.
    """
    # The cache is checked against this job's model, pairs and numerics before anything loads.
    expected = cache_record(model_dir, pairs_path, training, torch.cuda.is_available())
    reference = read_reference_cache(reference_path, expected)
    require_pairs(reference, [r["pair_id"] for r in read_jsonl(pairs_path)], reference_path)
    model, tokenizer, on_gpu = load_for_training(model_dir, training, seed)
    dataset = build_pair_dataset(pairs_path, tokenizer, training["max_prompt_length"])
    dataset = dataset.add_column(
        "ref_chosen_logps", [reference[p]["ref_chosen_logps"] for p in dataset["pair_id"]]
    ).add_column(
        "ref_rejected_logps", [reference[p]["ref_rejected_logps"] for p in dataset["pair_id"]]
    )
    trainer = PrefOptDPOTrainer(
        model=model,
        args=_dpo_config(work_dir, training, seed, learning_rate, on_gpu),
        train_dataset=dataset,
        processing_class=tokenizer,
        loss_name=loss_name,
        loss_params=loss_params,
        diagnostics_path=diagnostics_path,
    )
    return trainer, tokenizer


def train_policy(
    model_dir: str | Path,
    pairs_path: str | Path,
    reference_path: str | Path,
    out_dir: str | Path,
    diagnostics_path: str | Path,
    training: dict[str, Any],
    loss_name: str,
    loss_params: dict[str, Any],
    seed: int,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Fine-tune the base model with one loss and one seed; save an HF folder + diagnostics.

    With `training.checkpoint_minutes` or `checkpoint_steps`, resume from the job's latest
    checkpoint (`prefopt.training.resume`). The job's skeleton is `run_training_job`.
    """

    def build(work_dir: Path) -> tuple[PrefOptDPOTrainer, Any]:
        return build_policy_trainer(
            model_dir,
            pairs_path,
            reference_path,
            work_dir,
            training,
            loss_name,
            loss_params,
            seed,
            learning_rate,
            diagnostics_path,
        )

    def reference_check(trainer: Any, checkpoints: Checkpoints | None) -> dict[str, Any]:
        if checkpoints and checkpoints.latest:  # no longer the reference: keep step 0's check
            return {"reference_check": checkpoints.marker["reference_check"]}
        check = check_reference_at_step_zero(trainer, reference_path, training["precision"])
        return {"reference_check": check}

    return run_training_job(
        build,
        inputs=[model_dir, pairs_path, reference_path],
        out_dir=out_dir,
        diagnostics_path=diagnostics_path,
        training=training,
        loss=loss_name,
        params=loss_params,
        seed=seed,
        learning_rate=learning_rate,
        carry=reference_check,
    )
